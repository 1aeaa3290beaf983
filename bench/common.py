"""Helpers shared by the bench scripts."""

from __future__ import annotations

import os
import platform

from journey.stats import percentile

__all__ = ["machine", "percentile"]


def machine() -> str:
    return f"{platform.machine()}, Python {platform.python_version()}, {os.cpu_count()} cores"
