"""The study's numbers per model pair: acceptance, preference, win rates with intervals, and agreement.

Which annotation counts follows open-instruct's human_eval/compute_metrics.py: first an annotator's latest answer
per item (re-submissions replaced; at equal timestamps the earlier record, as its stable sort keeps), then, with
`annotation="first"` (its analysis), each item's earliest remaining annotation; `"latest"` takes the most recent
(its app's live summary). An item is (model pair, instance_id): the same instance_id recurs across pairings.
Judgements are oriented to the pair's first model in sorted order (Annotation.pair), whichever side it was shown
on, and scored +2 (clearly better) … −2 (clearly worse).

Intervals come from library routines, not hand-written formulas: Wilson score intervals for acceptance rates
(scipy's binomtest(...).proportion_ci), and for win / tie / loss and win + ½ tie a BCa bootstrap over items
(scipy.stats.bootstrap, seeded), since items, not annotations, are the sampled units.
"""
from __future__ import annotations

import datetime
import math
import warnings

import numpy as np

from camel_jax.cli import UsageError
from camel_jax.human_eval import agreement
from camel_jax.human_eval.records import PREFERENCE_SCORE, Annotation

SELECTIONS = ("first", "latest")
CONFIDENCE = 0.95
OUTCOMES = ("win", "tie", "loss", "win_half_tie")
SCALE = ("clearly_better", "slightly_better", "tie", "slightly_worse", "clearly_worse")  # scores 2 … −2


def _time(a: Annotation) -> datetime.datetime:
    try:
        t = datetime.datetime.fromisoformat(a.timestamp)
        # an offset-aware time is compared in UTC with the naive ones (taken as UTC) instead of failing to sort
        return t.astimezone(datetime.timezone.utc).replace(tzinfo=None) if t.tzinfo else t
    except ValueError:
        raise UsageError(f"annotation of {a.instance_id!r} by {a.evaluator!r}: timestamp {a.timestamp!r} is not "
                         f"YYYY-MM-DD HH:MM:SS[.ffffff]") from None


def deduplicate(annotations: list[Annotation]) -> list[Annotation]:
    """Each annotator's latest answer per item, all sorted by time (stable: input order breaks ties)."""
    keyed = sorted(enumerate(annotations), key=lambda ia: (_time(ia[1]), -ia[0]), reverse=True)
    seen, kept = set(), []
    for i, a in keyed:  # newest first; at equal times the earlier record comes first and is kept
        key = (a.pair, a.instance_id, a.evaluator)
        if key not in seen:
            seen.add(key)
            kept.append((i, a))
    return [a for _, a in sorted(kept, key=lambda ia: (_time(ia[1]), ia[0]))]


def items_by_pair(annotations: list[Annotation]) -> dict[tuple[str, str], dict[str, list[Annotation]]]:
    """pair -> instance_id -> its deduplicated annotations, oldest first."""
    out: dict = {}
    for a in deduplicate(annotations):
        out.setdefault(a.pair, {}).setdefault(a.instance_id, []).append(a)
    return dict(sorted(out.items()))


def oriented(a: Annotation, reference: str) -> dict:
    """A judgement from `reference`'s side: score −2…2 and (reference acceptable, other acceptable)."""
    if a.model_a != reference:
        a = a.flipped()
    return {"evaluator": a.evaluator, "score": PREFERENCE_SCORE[a.preference],
            "accept": (a.completion_a_is_acceptable == "yes", a.completion_b_is_acceptable == "yes")}


def wilson(k: int, n: int) -> list[float] | None:
    """Wilson score 95% interval of k successes in n (scipy)."""
    if n == 0:
        return None
    from scipy.stats import binomtest

    ci = binomtest(k, n).proportion_ci(confidence_level=CONFIDENCE, method="wilson")
    return [float(ci.low), float(ci.high)]


def bootstrap_ci(values: np.ndarray, seed: int, n_resamples: int) -> list[float] | None:
    """BCa 95% interval of the mean of per-item values, resampling items (scipy.stats.bootstrap, seeded).
    Constant values have the degenerate interval [v, v]; fewer than two items have none."""
    if len(values) < 2:
        return None
    if np.all(values == values[0]):
        return [float(values[0])] * 2
    from scipy.stats import bootstrap

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a degenerate resample distribution shows as NaN, handled below
        res = bootstrap((values,), np.mean, n_resamples=n_resamples, confidence_level=CONFIDENCE,
                        method="BCa", rng=np.random.default_rng(seed))
    low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    return [low, high] if math.isfinite(low) and math.isfinite(high) else None


def _compared(anns: list[dict], annotation: str) -> tuple[dict, dict]:
    return (anns[0], anns[1]) if annotation == "first" else (anns[-2], anns[-1])


def summarize_pair(pair: tuple[str, str], items: dict[str, list[Annotation]], annotation: str, seed: int,
                   n_resamples: int) -> dict:
    ref = pair[0]
    judged = {i: [oriented(a, ref) for a in anns] for i, anns in items.items()}
    chosen = [anns[0] if annotation == "first" else anns[-1] for anns in judged.values()]
    n = len(chosen)
    scores = np.array([c["score"] for c in chosen])
    acceptance = {}
    for m, model in enumerate(pair):
        k = sum(c["accept"][m] for c in chosen)
        acceptance[model] = {"accepted": k, "n": n, "rate": k / n, "ci95": wilson(k, n)}
    # paired over items (both answers come from the same annotation): first model's rate minus the second's
    diff = np.array([float(c["accept"][0]) - float(c["accept"][1]) for c in chosen])
    difference = {"value": float(np.mean(diff)), "ci95": bootstrap_ci(diff, seed, n_resamples)}
    both = sum(c["accept"][0] and c["accept"][1] for c in chosen)
    neither = sum(not c["accept"][0] and not c["accept"][1] for c in chosen)
    scale = {name: int(np.sum(scores == s)) for name, s in zip(SCALE, (2, 1, 0, -1, -2))}
    per_item = {"win": (scores > 0).astype(float), "tie": (scores == 0).astype(float),
                "loss": (scores < 0).astype(float)}
    per_item["win_half_tie"] = per_item["win"] + 0.5 * per_item["tie"]
    outcome = {k: {"rate": float(np.mean(v)), "ci95": bootstrap_ci(v, seed, n_resamples)}
               for k, v in per_item.items()}
    multi = [_compared(anns, annotation) for anns in judged.values() if len(anns) >= 2]
    return {
        "models": list(pair), "view": ref, "n_items": n,
        "n_annotations": sum(len(a) for a in judged.values()),
        "annotators": sorted({a["evaluator"] for anns in judged.values() for a in anns}),
        "acceptance": acceptance, "acceptance_difference": difference,
        "both_acceptable": both / n, "neither_acceptable": neither / n,
        "preference": {"counts": scale, "shares": {k: v / n for k, v in scale.items()}},
        "outcome": outcome,
        "agreement": {"percent": agreement.percent(multi),
                      "krippendorff_alpha": agreement.krippendorff_alpha(judged),
                      "cohen_kappa": agreement.cohen_kappa(multi)},
    }


def check(annotation: str, n_resamples: int) -> None:
    """The options' errors, named as the commands' flags (so a CLI can check before any work)."""
    if annotation not in SELECTIONS:
        raise UsageError(f"--annotation {annotation!r}: expected one of {', '.join(SELECTIONS)}")
    if n_resamples < 1:
        raise UsageError(f"--n_resamples {n_resamples}: must be at least 1")


def summarize(annotations: list[Annotation], annotation: str = "first", seed: int = 0,
              n_resamples: int = 9999) -> dict:
    """Every model pair's statistics, JSON-serialisable (lists, dicts, floats, None)."""
    check(annotation, n_resamples)
    pairs = items_by_pair(annotations)
    kept = sum(len(anns) for items in pairs.values() for anns in items.values())
    return {"annotation": annotation, "seed": seed, "n_resamples": n_resamples, "confidence": CONFIDENCE,
            "n_records": len(annotations), "n_deduplicated": kept, "replaced_resubmissions": len(annotations) - kept,
            "pairs": [summarize_pair(p, items, annotation, seed, n_resamples) for p, items in pairs.items()]}


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _ci(ci: list[float] | None) -> str:
    return "" if ci is None else f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"


def _num(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def render_text(summary: dict) -> str:
    """The summary as the lines `python -m camel_jax.human_eval stats` prints."""
    lines = [f"{summary['n_records']} records, {summary['n_deduplicated']} after keeping each annotator's latest "
             f"answer per item; counting the {summary['annotation']} annotation per item; "
             f"{int(100 * summary['confidence'])}% intervals (Wilson; BCa bootstrap over items, "
             f"{summary['n_resamples']} resamples, seed {summary['seed']})"]
    for p in summary["pairs"]:
        ref, other = p["models"]
        lines += ["", f"== {ref} vs {other}: {p['n_items']} items, {p['n_annotations']} annotations by "
                      f"{len(p['annotators'])} annotators"]
        for model, acc in p["acceptance"].items():
            lines.append(f"  acceptable  {model}: {_pct(acc['rate'])}{_ci(acc['ci95'])} ({acc['accepted']}/{acc['n']})")
        d = p["acceptance_difference"]
        lines.append(f"  acceptance difference {ref} - {other}: {100 * d['value']:+.1f} points"
                     + ("" if d["ci95"] is None else f" [{100 * d['ci95'][0]:+.1f}, {100 * d['ci95'][1]:+.1f}]")
                     + " (paired over items)")
        lines.append(f"  both acceptable {_pct(p['both_acceptable'])}, neither {_pct(p['neither_acceptable'])}")
        shares = p["preference"]["shares"]
        lines.append(f"  preference ({ref}'s view): " + ", ".join(
            f"{k.replace('_', ' ')} {_pct(shares[k])}" for k in SCALE))
        o = p["outcome"]
        lines.append(f"  {ref} wins {_pct(o['win']['rate'])}{_ci(o['win']['ci95'])}, ties "
                     f"{_pct(o['tie']['rate'])}{_ci(o['tie']['ci95'])}, loses {_pct(o['loss']['rate'])}"
                     f"{_ci(o['loss']['ci95'])}; win + 1/2 tie {_pct(o['win_half_tie']['rate'])}"
                     f"{_ci(o['win_half_tie']['ci95'])}")
        pa, ka, ck = (p["agreement"][k] for k in ("percent", "krippendorff_alpha", "cohen_kappa"))
        lines.append(f"  agreement over {pa['n_items']} doubly-annotated items ({summary['annotation']} two): "
                     f"acceptance {_num(pa['acceptance'])}, preference strict {_num(pa['preference_strict'])}, "
                     f"relaxed {_num(pa['preference_relaxed'])}")
        lines.append(f"  Krippendorff's alpha: preference (ordinal) {_num(ka['preference_ordinal'])}, "
                     f"acceptance (nominal) {_num(ka['acceptance_nominal'])}")
        if ck["annotators"]:
            lines.append(f"  Cohen's kappa ({' / '.join(ck['annotators'])}): acceptance {_num(ck['acceptance'])}, "
                         f"preference 3-way {_num(ck['preference_3way'])}, 5-way quadratic "
                         f"{_num(ck['preference_5way_quadratic'])}")
        else:
            lines.append(f"  Cohen's kappa: not reported ({ck['reason']})")
    if not summary["pairs"]:
        lines.append("no annotations")
    return "\n".join(lines) + "\n"
