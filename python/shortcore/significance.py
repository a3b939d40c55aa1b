"""Is one variant's click-through rate really different from the control's? The two-proportion
z-test, and the verdict a report prints. ``docs/analytics.md`` gives the method with an example.

* difference ``d = p1 - p0`` of the click-through rates ``p = unique clickers / messages``;
* its 95% confidence interval ``d ± 1.96 · sqrt(p0(1-p0)/n0 + p1(1-p1)/n1)`` (Wald, unpooled);
* ``z = d / sqrt(p(1-p)(1/n0 + 1/n1))`` with the pooled ``p = (x0 + x1) / (n0 + n1)``, and the
  two-sided p-value ``2 · (1 - Φ(|z|))``, ``Φ`` the standard normal CDF (through ``math.erf``);
* with several variants against one control, the p-values are Bonferroni-adjusted (times the
  number of comparisons) so that "significant" keeps a 5% false-alarm rate for the whole test;
* the normal approximation needs counts: a comparison where either side has fewer than 5
  clickers or 5 non-clickers is never called significant, whatever its p-value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

ALPHA: Final = 0.05
Z_95: Final = 1.959963984540054  # the 97.5th percentile of the standard normal
MIN_COUNT: Final = 5


def normal_cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


@dataclass(frozen=True, slots=True)
class Comparison:
    """One variant (``x1`` clickers of ``n1``) against the control (``x0`` of ``n0``)."""

    difference: float
    ci_low: float
    ci_high: float
    z: float | None
    p_value: float | None
    p_adjusted: float | None
    significant: bool
    note: str

    def to_json(self) -> dict[str, Any]:
        return {
            "ctr_difference": round(self.difference, 6),
            "ci95": [round(self.ci_low, 6), round(self.ci_high, 6)],
            "z": None if self.z is None else round(self.z, 4),
            "p_value": None if self.p_value is None else round(self.p_value, 6),
            "p_value_adjusted": None if self.p_adjusted is None else round(self.p_adjusted, 6),
            "significant": self.significant,
            "note": self.note,
        }


def compare(x0: int, n0: int, x1: int, n1: int, comparisons: int = 1) -> Comparison:
    """The two-proportion z-test of ``x1/n1`` against ``x0/n0``, Bonferroni-adjusted for
    ``comparisons`` comparisons."""
    if n0 <= 0 or n1 <= 0:
        return Comparison(0.0, 0.0, 0.0, None, None, None, False, "no messages to compare")
    p0, p1 = x0 / n0, x1 / n1
    difference = p1 - p0
    half = Z_95 * math.sqrt(p0 * (1 - p0) / n0 + p1 * (1 - p1) / n1)
    pooled = (x0 + x1) / (n0 + n1)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n0 + 1 / n1))
    if se == 0:
        return Comparison(difference, difference, difference, None, None, None, False, "no clicks to compare yet")
    z = difference / se
    p_value = min(1.0, 2.0 * (1.0 - normal_cdf(abs(z))))
    p_adjusted = min(1.0, p_value * max(1, comparisons))
    enough = min(x0, n0 - x0, x1, n1 - x1) >= MIN_COUNT
    significant = enough and p_adjusted < ALPHA
    if not enough:
        note = f"too few clicks for the test (each side needs {MIN_COUNT} clickers and {MIN_COUNT} non-clickers)"
    elif significant:
        note = "significant at 5%" + (f" after adjusting for {comparisons} comparisons" if comparisons > 1 else "")
    else:
        note = "not significant at 5%" + (f" after adjusting for {comparisons} comparisons" if comparisons > 1 else "")
    return Comparison(difference, difference - half, difference + half, z, p_value, p_adjusted, significant, note)


def _points(x: float) -> str:
    return f"{x * 100:+.2f} points"


def verdict(names: Sequence[str], clickers: Sequence[int], messages: Sequence[int]) -> dict[str, Any]:
    """Every variant against the first (the control), and which one wins, if the data say so.

    A variant wins when it beats the control significantly and, if other variants beat the
    control too, it also beats each of them significantly. The control wins when every other
    variant is significantly worse. Otherwise nobody wins yet."""
    k = len(names)
    if k < 2:
        return {"control": names[0] if names else None, "winner": None, "text": "", "comparisons": {}}
    m = k - 1
    results = {names[i]: compare(clickers[0], messages[0], clickers[i], messages[i], m) for i in range(1, k)}
    rate = {name: (clickers[i] / messages[i] if messages[i] else 0.0) for i, name in enumerate(names)}
    better = [name for name, c in results.items() if c.significant and c.difference > 0]
    worse = [name for name, c in results.items() if c.significant and c.difference < 0]
    control = names[0]
    winner: str | None = None
    if better:
        best = max(better, key=lambda name: rate[name])
        index = {name: i for i, name in enumerate(names)}
        rivals = [name for name in better if name != best]
        beats_rivals = all(
            compare(
                clickers[index[r]], messages[index[r]], clickers[index[best]], messages[index[best]], len(rivals)
            ).significant
            for r in rivals
        )
        if beats_rivals:
            winner = best
            c = results[best]
            text = (
                f"{best} wins: click-through {rate[best]:.2%} against {rate[control]:.2%} for {control}, "
                f"{_points(c.difference)} (95% CI {_points(c.ci_low)} to {_points(c.ci_high)}), "
                f"p = {c.p_adjusted:.3g}."
            )
        else:
            text = (
                f"{', '.join(better)} beat {control}, but none of them beats the others significantly yet; "
                "keep sending or pick on other grounds."
            )
    elif len(worse) == m:
        winner = control
        text = f"{control} (the control) wins: every other variant has a significantly lower click-through rate."
    else:
        text = (
            f"No significant difference from {control} yet: the click-through rates differ by chance as far as "
            "this test can tell; more messages or clicks are needed."
        )
    return {
        "control": control,
        "winner": winner,
        "text": text,
        "comparisons": {name: c.to_json() for name, c in results.items()},
    }


def comparison_cells(vs: dict[str, Any]) -> tuple[str, str, str, bool]:
    """A variant's comparison with the control (``vs_control`` of the stats) as a table shows
    it: the CTR difference and its 95% interval in percentage points, the adjusted p-value, and
    whether it is significant."""
    low, high = vs["ci95"]
    p = vs["p_value_adjusted"]
    return (
        f"{vs['ctr_difference'] * 100:+.2f}",
        f"{low * 100:+.2f} to {high * 100:+.2f}",
        "-" if p is None else f"{p:.3g}",
        bool(vs["significant"]),
    )
