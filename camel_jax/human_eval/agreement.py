"""Inter-annotator agreement on one model pair: open-instruct's percent agreement and chance-corrected statistics.

Percent agreement is exactly what open-instruct's human_eval/compute_metrics.py reports, so our numbers can be
set beside theirs: over the items with two or more annotations, the two annotations it compares (the first two by
time; `latest` compares the last two, as its app.py summary does) either agree on the winner or tie ("strict", 3
ways), with half credit when exactly one of the two said tie ("relaxed", its `relexed_comparison_agreement`);
acceptance agreement is averaged over both models' yes/no answers. Percent agreement ignores agreement by chance
(two annotators who both say "yes" to 90% of responses agree 82% of the time at random), hence also
Krippendorff's α over every annotation (any number per item, annotators rotating, missing cells allowed; ordinal
on the −2…+2 preference scale, nominal for acceptance) and Cohen's κ, which assumes the same two raters
throughout, only when exactly two annotators share the doubly-annotated items.
"""
from __future__ import annotations

import math
import warnings

import numpy as np

PREFERENCE_DOMAIN = (-2, -1, 0, 1, 2)


def _sign(score: int) -> int:
    return (score > 0) - (score < 0)


def percent(pairs: list[tuple[dict, dict]]) -> dict:
    """Open-instruct's agreement over the compared two annotations of each multiply-annotated item; each
    annotation a dict {"score": −2…2 from the reference model's side, "accept": (bool, bool)}."""
    n = len(pairs)
    out = {"n_items": n, "acceptance": None, "acceptance_per_model": None, "preference_strict": None,
           "preference_relaxed": None}
    if not n:
        return out
    strict = relaxed = 0.0
    accept = [0, 0]
    for x, y in pairs:
        a, b = _sign(x["score"]), _sign(y["score"])
        if a == b:
            strict += 1
            relaxed += 1
        elif a == 0 or b == 0:
            relaxed += 0.5
        for m in (0, 1):
            accept[m] += x["accept"][m] == y["accept"][m]
    out.update(acceptance=sum(accept) / (2 * n), acceptance_per_model=[accept[0] / n, accept[1] / n],
               preference_strict=strict / n, preference_relaxed=relaxed / n)
    return out


def _alpha(matrix: np.ndarray, level: str, domain) -> float | None:
    """krippendorff.alpha, or None when it is undefined (no item with two values, or one value only)."""
    import krippendorff

    if matrix.size == 0 or not np.any(np.sum(~np.isnan(matrix), axis=0) >= 2):
        return None
    values = matrix[~np.isnan(matrix)]
    if len(np.unique(values)) < 2:
        return None
    with np.errstate(invalid="ignore", divide="ignore"):  # no expected disagreement: undefined, None below
        value = krippendorff.alpha(reliability_data=matrix, value_domain=list(domain), level_of_measurement=level)
    return float(value) if math.isfinite(value) else None


def krippendorff_alpha(items: dict[str, list[dict]]) -> dict:
    """α over every annotation of the pair: items maps id -> that item's annotations, each {"evaluator",
    "score", "accept"}; the reliability matrix is annotators × items (NaN where one did not annotate)."""
    raters = sorted({a["evaluator"] for anns in items.values() for a in anns})
    index = {r: i for i, r in enumerate(raters)}
    ids = sorted(items)
    pref = np.full((len(raters), len(ids)), np.nan)
    accept = np.full((len(raters), 2 * len(ids)), np.nan)  # a unit per (item, model): both models' answers
    for j, item in enumerate(ids):
        for a in items[item]:
            i = index[a["evaluator"]]
            pref[i, j] = a["score"]
            accept[i, 2 * j], accept[i, 2 * j + 1] = float(a["accept"][0]), float(a["accept"][1])
    return {"preference_ordinal": _alpha(pref, "ordinal", PREFERENCE_DOMAIN),
            "acceptance_nominal": _alpha(accept, "nominal", (0.0, 1.0)),
            "acceptance_nominal_per_model": [_alpha(accept[:, m::2], "nominal", (0.0, 1.0)) for m in (0, 1)],
            "n_annotators": len(raters), "n_items": len(ids)}


def _kappa(y1, y2, labels, weights=None) -> float | None:
    from sklearn.metrics import cohen_kappa_score

    with warnings.catch_warnings():  # undefined (e.g. one label throughout) is NaN, reported as None
        warnings.simplefilter("ignore")
        value = cohen_kappa_score(y1, y2, labels=list(labels), weights=weights, replace_undefined_by=np.nan)
    return float(value) if math.isfinite(value) else None


def cohen_kappa(pairs: list[tuple[dict, dict]]) -> dict:
    """Cohen's κ when the compared annotations of every multiply-annotated item come from the same two people
    (rater 1 = the alphabetically first of them); otherwise the reason it is not reported."""
    people = sorted({a["evaluator"] for pair in pairs for a in pair})
    if len(people) != 2:
        reason = ("no item has two annotations" if not pairs else
                  f"{len(people)} annotators share the items; Cohen's kappa assumes the same two throughout "
                  f"(see Krippendorff's alpha)")
        return {"annotators": None, "reason": reason}
    first = [x if x["evaluator"] == people[0] else y for x, y in pairs]
    second = [y if x["evaluator"] == people[0] else x for x, y in pairs]
    return {"annotators": people, "n_items": len(pairs),
            "acceptance": _kappa([int(v) for a in first for v in a["accept"]],
                                 [int(v) for a in second for v in a["accept"]], (0, 1)),
            "preference_3way": _kappa([_sign(a["score"]) for a in first], [_sign(a["score"]) for a in second],
                                      (-1, 0, 1)),
            "preference_5way_quadratic": _kappa([a["score"] for a in first], [a["score"] for a in second],
                                                PREFERENCE_DOMAIN, "quadratic")}
