"""Small statistics shared by the inbox metrics, the eval reports and the bench scripts."""

from __future__ import annotations

from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile (``q`` from 0 to 1) with linear interpolation between the nearest
    ranks (numpy's default); None for no values."""
    if not 0 <= q <= 1:
        raise ValueError(f"q is a fraction from 0 to 1, not {q}")
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)
