"""Helpers shared by the bench scripts."""

from __future__ import annotations

import os
import platform


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) by nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def machine() -> str:
    return f"{platform.machine()}, Python {platform.python_version()}, {os.cpu_count()} cores"
