"""The study's statistics: selection of the counted annotation, rates, intervals, agreement; checked by hand on a
crafted set with re-submissions, against a textbook Wilson interval, and against the figures open-instruct's own
compute_metrics.py gives on its released TÜLU-1 annotations (human_eval_anchors.md §1)."""
import csv
import dataclasses
import gzip
import json
import pathlib

import numpy as np
import pytest

from camel_jax.cli import UsageError
from camel_jax.human_eval import stats
from camel_jax.human_eval.records import Annotation

OI_FIXTURE = pathlib.Path(__file__).parent / "data" / "human_eval" / "oi_tulu1_annotations.csv.gz"


def ann(item, a, b, acc_a, acc_b, pref, who, ts):
    return Annotation(instance_id=item, model_a=a, model_b=b, completion_a=f"{a} says", completion_b=f"{b} says",
                      completion_a_is_acceptable=acc_a, completion_b_is_acceptable=acc_b, preference=pref,
                      evaluator=who, timestamp=f"2024-01-01 10:00:{ts:02d}")


# Models alpha/beta (canonical order: alpha first, so every score is alpha's advantage, +2 … −2).
CRAFTED = [
    ann("i1", "alpha", "beta", "yes", "no", "a-is-better", "x", 1),            # alpha +2
    ann("i1", "beta", "alpha", "no", "yes", "b-is-slightly-better", "y", 2),   # alpha +1 (alpha shown as B)
    ann("i2", "beta", "alpha", "yes", "yes", "tie", "x", 1),                   # x's first answer: replaced at 05
    ann("i2", "alpha", "beta", "yes", "yes", "a-is-slightly-better", "y", 3),  # alpha +1
    ann("i2", "beta", "alpha", "yes", "no", "a-is-better", "x", 5),            # x re-submits: alpha −2
    ann("i3", "alpha", "beta", "no", "yes", "b-is-better", "y", 2),            # alpha −2
]


def test_first_counts_each_items_earliest_annotator_after_replacing_resubmissions():
    s = stats.summarize(CRAFTED, "first", n_resamples=200)
    assert (s["n_records"], s["n_deduplicated"], s["replaced_resubmissions"]) == (6, 5, 1)
    [p] = s["pairs"]
    assert p["models"] == ["alpha", "beta"] and p["n_items"] == 3 and p["annotators"] == ["x", "y"]
    # first per item: i1 x@01 (+2), i2 y@03 (+1; x's 01 answer was replaced by its 05 one), i3 y (−2)
    assert p["preference"]["counts"] == {"clearly_better": 1, "slightly_better": 1, "tie": 0, "slightly_worse": 0,
                                         "clearly_worse": 1}
    o = p["outcome"]
    assert (o["win"]["rate"], o["tie"]["rate"], o["loss"]["rate"]) == pytest.approx((2 / 3, 0, 1 / 3))
    assert o["win_half_tie"]["rate"] == pytest.approx(2 / 3)
    # alpha acceptable: i1 x yes, i2 y yes, i3 no -> 2/3; beta: i1 x no, i2 y yes, i3 yes -> 2/3
    assert p["acceptance"]["alpha"]["accepted"] == 2 and p["acceptance"]["beta"]["accepted"] == 2
    assert p["both_acceptable"] == pytest.approx(1 / 3) and p["neither_acceptable"] == 0
    # paired per item alpha − beta: i1 1 − 0, i2 1 − 1, i3 0 − 1 -> mean 0
    assert p["acceptance_difference"]["value"] == 0


def test_latest_counts_each_items_most_recent_annotation():
    p = stats.summarize(CRAFTED, "latest", n_resamples=200)["pairs"][0]
    # latest per item: i1 y@02 (+1), i2 x@05 (−2), i3 y (−2)
    o = p["outcome"]
    assert (o["win"]["rate"], o["loss"]["rate"]) == pytest.approx((1 / 3, 2 / 3))
    # alpha: i1 y yes, i2 x no, i3 no -> 1/3; beta: i1 y no, i2 x yes, i3 yes -> 2/3
    assert p["acceptance"]["alpha"]["accepted"] == 1 and p["acceptance"]["beta"]["accepted"] == 2


def test_percent_agreement_as_open_instruct_counts_it():
    a = stats.summarize(CRAFTED, "first", n_resamples=200)["pairs"][0]["agreement"]["percent"]
    # i1: x +2, y +1 -> same winner (agree); i2: y +1, x −2 -> opposite winners, no tie (0, no half credit)
    assert a["n_items"] == 2 and a["preference_strict"] == 0.5 and a["preference_relaxed"] == 0.5
    # acceptance over both models: i1 alpha yes/yes, beta no/no; i2 alpha yes/no, beta yes/yes -> 3 of 4
    assert a["acceptance"] == 0.75 and a["acceptance_per_model"] == [0.5, 1.0]
    # Had x's replaced tie on i2 counted, i2 would get half credit (relaxed 0.75): the replacement matters.
    kept_old = [x for x in CRAFTED if x.timestamp[-2:] != "05"]
    assert stats.summarize(kept_old, n_resamples=200)["pairs"][0]["agreement"]["percent"][
        "preference_relaxed"] == 0.75


def test_chance_corrected_agreement_by_hand():
    ag = stats.summarize(CRAFTED, "first", n_resamples=200)["pairs"][0]["agreement"]
    ka = ag["krippendorff_alpha"]
    # Acceptance, nominal, units (item, model) with two values: (1,1) (0,0) (0,1) (1,1): n = 8, n_1 = 5, n_0 = 3,
    # disagreeing ordered pairs o_01 + o_10 = 2; alpha = 1 − (n − 1)·2 / (2·n_1·n_0) = 1 − 14/30.
    assert ka["acceptance_nominal"] == pytest.approx(1 - 14 / 30)
    # Preference, ordinal: i1 (+2, +1), i2 (−2, +1); n_−2 = 1, n_1 = 2, n_2 = 1, n = 4.
    # delta(1,2) = (n_1 + n_2 − (n_1 + n_2)/2)^2 = 1.5^2; delta(−2,1) = (1 + 0 + 0 + 2 − 1.5)^2 = 1.5^2;
    # delta(−2,2) = (4 − 1)^2 = 9. Observed sum 4·2.25 = 9; expected sum 2·(2·2.25 + 2·2.25 + 1·9) = 36;
    # alpha = 1 − (n − 1)·9/36 = 0.25.
    assert ka["preference_ordinal"] == pytest.approx(0.25)
    # Cohen's kappa (x and y rate both doubly-annotated items). Acceptance units (i1 alpha, i1 beta, i2 alpha,
    # i2 beta): x 1,0,0,1; y 1,0,1,1 -> p_o = 3/4, p_e = .5·.75 + .5·.25 = .5, kappa = (.75 − .5)/(1 − .5).
    ck = ag["cohen_kappa"]
    assert ck["annotators"] == ["x", "y"] and ck["acceptance"] == pytest.approx(0.5)
    # 3-way: x (+, −), y (+, +): p_o = 1/2, p_e = .5·1 + .5·0 = 1/2 -> kappa 0.
    assert ck["preference_3way"] == pytest.approx(0.0)


def test_cohen_kappa_is_withheld_when_annotators_rotate():
    third = [ann("i3", "beta", "alpha", "yes", "no", "tie", "z", 9)]
    ck = stats.summarize(CRAFTED + third, n_resamples=200)["pairs"][0]["agreement"]["cohen_kappa"]
    assert ck["annotators"] is None and "3 annotators" in ck["reason"]


def test_wilson_matches_the_textbook():
    # Newcombe (1998), Statistics in Medicine 17:857, Table I: 81/263 -> Wilson score 0.2553 to 0.3662.
    low, high = stats.wilson(81, 263)
    assert (round(low, 4), round(high, 4)) == (0.2553, 0.3662)
    assert stats.wilson(0, 0) is None


def test_bootstrap_is_reproducible_with_the_seed():
    rng = np.random.default_rng(1)
    values = rng.random(60)  # continuous, so two seeds' intervals differ
    a, b = stats.bootstrap_ci(values, 7, 500), stats.bootstrap_ci(values, 7, 500)
    assert a == b and a[0] < values.mean() < a[1]
    assert stats.bootstrap_ci(values, 8, 500) != a
    assert stats.bootstrap_ci(np.ones(5), 0, 500) == [1.0, 1.0]  # constant: the degenerate interval
    s1 = json.dumps(stats.summarize(CRAFTED, seed=3, n_resamples=300))
    assert s1 == json.dumps(stats.summarize(CRAFTED, seed=3, n_resamples=300))


def test_bad_selection_and_timestamp_are_named():
    with pytest.raises(UsageError, match="--annotation 'last'"):
        stats.summarize(CRAFTED, "last")
    bad = [dataclasses.replace(CRAFTED[0], timestamp="yesterday")]
    with pytest.raises(UsageError, match="'i1' by 'x': timestamp 'yesterday'"):
        stats.summarize(bad)


def test_offset_timestamps_sort_with_naive_ones():
    # 10:00:04+01:00 is 09:00:04 UTC, before y's 10:00:02: x's answer is the first, not the latest
    early = dataclasses.replace(CRAFTED[2], timestamp="2024-01-01 10:00:04+01:00", instance_id="i9")
    late = dataclasses.replace(CRAFTED[3], instance_id="i9")
    p = stats.summarize([late, early], "first", n_resamples=50)["pairs"][0]
    assert p["annotators"] == ["x", "y"] and p["preference"]["counts"]["tie"] == 1  # x's tie counts


def test_no_annotations():
    s = stats.summarize([])
    assert s["pairs"] == [] and stats.render_text(s).endswith("no annotations\n")
    with pytest.raises(UsageError, match="--n_resamples 0"):
        stats.summarize(CRAFTED, n_resamples=0)


def test_render_text_names_every_figure():
    text = stats.render_text(stats.summarize(CRAFTED, n_resamples=200))
    assert "alpha vs beta: 3 items, 5 annotations by 2 annotators" in text
    assert "acceptable  alpha: 66.7%" in text and "win + 1/2 tie 66.7%" in text
    assert "preference strict 0.500, relaxed 0.500" in text and "Cohen's kappa (x / y)" in text


def _oi_annotations():
    with gzip.open(OI_FIXTURE, "rt", encoding="utf-8", newline="") as f:
        return [Annotation(instance_id=r["instance_id"], model_a=r["model_a"], model_b=r["model_b"],
                           completion_a="(omitted)", completion_b="(omitted)",
                           completion_a_is_acceptable=r["completion_a_is_acceptable"],
                           completion_b_is_acceptable=r["completion_b_is_acceptable"], preference=r["preference"],
                           evaluator=r["evaluator"], timestamp=r["timestamp"]) for r in csv.DictReader(f)]


def test_open_instructs_released_annotations_give_its_own_figures():
    """1,150 rows -> 1,141 after replacing re-submissions; per pair the acceptance, preference and agreement that
    open-instruct's compute_metrics.py prints (recomputed with it, human_eval_anchors.md §1), plus the Wilson
    intervals and Krippendorff alphas recorded there."""
    s = stats.summarize(_oi_annotations(), "first", n_resamples=200)
    assert (s["n_records"], s["n_deduplicated"]) == (1150, 1141)
    by = {tuple(p["models"]): p for p in s["pairs"]}
    chat, seven, human = by["chatgpt", "tulu_65B"], by["tulu_65B", "tulu_7B"], by["tulu_65B", "tulu_human_only_65B"]
    assert [p["n_items"] for p in (chat, seven, human)] == [332] * 3
    r1 = lambda x: round(100 * x, 1)  # noqa: E731
    assert r1(chat["acceptance"]["tulu_65B"]["rate"]) == 79.2 and r1(chat["acceptance"]["chatgpt"]["rate"]) == 90.1
    assert [r1(x) for x in chat["acceptance"]["tulu_65B"]["ci95"]] == [74.5, 83.2]
    assert [r1(x) for x in chat["acceptance"]["chatgpt"]["ci95"]] == [86.4, 92.8]
    assert r1(chat["acceptance_difference"]["value"]) == 10.8  # the anchors' paired difference, −10.8 from 65B
    assert r1(seven["acceptance"]["tulu_7B"]["rate"]) == 68.7 and r1(human["acceptance"]["tulu_65B"]["rate"]) == 81.3
    # chatgpt's view: clearly better 19.9, slightly 19.3, tie 33.1, slightly worse 20.5, clearly worse 7.2
    assert [r1(chat["preference"]["shares"][k]) for k in stats.SCALE] == [19.9, 19.3, 33.1, 20.5, 7.2]
    assert r1(seven["outcome"]["win"]["rate"]) == 45.2 and r1(seven["outcome"]["loss"]["rate"]) == 22.9
    assert r1(human["outcome"]["win"]["rate"]) == 50.0 and r1(human["outcome"]["loss"]["rate"]) == 20.2
    pa = [p["agreement"]["percent"] for p in (chat, seven, human)]
    assert [a["n_items"] for a in pa] == [63, 56, 2]
    assert [round(a["acceptance"], 3) for a in pa] == [0.905, 0.786, 1.0]
    assert [round(a["preference_strict"], 3) for a in pa] == [0.556, 0.607, 0.5]
    assert [round(a["preference_relaxed"], 3) for a in pa] == [0.683, 0.75, 0.75]
    ka = [p["agreement"]["krippendorff_alpha"] for p in (chat, seven)]
    assert [round(a["preference_ordinal"], 3) for a in ka] == [0.367, 0.365]
    # TÜLU-65B's acceptance alone (model 2 of the ChatGPT pair, model 1 of the 7B pair): 0.563 / 0.474
    assert [round(ka[0]["acceptance_nominal_per_model"][1], 3), round(ka[1]["acceptance_nominal_per_model"][0], 3)] \
        == [0.563, 0.474]
