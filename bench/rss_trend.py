"""The statistics of bench/daemon.py's RSS trend (issue 16): a least-squares slope of RSS against pass number.

Criterion, fixed before measuring: after the warm-up (passes ``warmup``..N), RSS has *no upward trend*
when the 95 % confidence interval of the slope includes 0, or when the slope is below 0.1 % of the mean
RSS per 100 passes. RSS samples of consecutive passes are strongly autocorrelated (RSS moves in steps, so
the residuals of a line are anything but independent): the interval widens the ordinary least-squares
standard error by sqrt((1 + r) / (1 - r)), r the lag-1 autocorrelation of the residuals (the usual AR(1)
effective-sample-size correction); both intervals are reported.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

Z95 = 1.96  # n is in the hundreds: the t quantile is 1.96-1.97
FLAT_PERCENT_PER_100 = 0.1


def slope_report(rss_kib: Sequence[int], warmup: int = 10) -> dict[str, Any]:
    """Slope of ``rss_kib`` (index 0 = after pass 1) over passes ``warmup``..N, with its intervals."""
    report = slope_of_points([(n, rss_kib[n - 1]) for n in range(warmup, len(rss_kib) + 1)])
    return {"warmup_pass": warmup, **report}


def slope_of_points(points: Sequence[tuple[int, int]]) -> dict[str, Any]:
    """The same for (pass number, RSS KiB) points: a subset of the passes, or one figure per window."""
    xs = [float(x) for x, _ in points]
    ys = [float(y) for _, y in points]
    n = len(xs)
    if n < 3:
        return {"passes_fitted": n}
    mx = sum(xs) / n
    my = sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    intercept = my - slope * mx
    residuals = [y - (intercept + slope * x) for x, y in zip(xs, ys, strict=True)]
    sse = sum(r * r for r in residuals)
    se = math.sqrt(sse / (n - 2) / sxx)
    num = sum(a * b for a, b in itertools.pairwise(residuals))
    r1 = num / sse if sse > 0 else 0.0
    r1 = max(0.0, min(r1, 0.99))  # negative autocorrelation would narrow the interval: do not
    se_adj = se * math.sqrt((1 + r1) / (1 - r1))

    def per100(kib_per_pass: float) -> float:  # % of the mean RSS per 100 passes
        return kib_per_pass * 100 / my * 100 if my else 0.0

    ci = (slope - Z95 * se, slope + Z95 * se)
    ci_adj = (slope - Z95 * se_adj, slope + Z95 * se_adj)
    flat = ci_adj[0] <= 0 or per100(slope) < FLAT_PERCENT_PER_100
    return {
        "passes_fitted": n,
        "mean_rss_mib": round(my / 1024, 2),
        "slope_kib_per_pass": round(slope, 4),
        "slope_percent_per_100_passes": round(per100(slope), 4),
        "ci95_ols_kib_per_pass": [round(v, 4) for v in ci],
        "residual_lag1_autocorrelation": round(r1, 3),
        "ci95_kib_per_pass": [round(v, 4) for v in ci_adj],
        "ci95_percent_per_100_passes": [round(per100(v), 4) for v in ci_adj],
        "criterion": (
            f"no upward trend: the 95 % CI (autocorrelation-adjusted) includes 0 or the slope is below "
            f"{FLAT_PERCENT_PER_100} % of the mean per 100 passes"
        ),
        "no_upward_trend": flat,
    }


def at_passes(rss_kib: Sequence[int], passes: Sequence[int]) -> dict[str, float]:
    """RSS (MiB) after each of ``passes`` that was reached."""
    return {str(p): round(rss_kib[p - 1] / 1024, 1) for p in passes if 0 < p <= len(rss_kib)}
