"""Agreement statistics: Krippendorff's alpha on Wikipedia's example, percent agreement's half credit for a tie,
and the cases where a statistic is undefined."""
import numpy as np
import pytest

from camel_jax.human_eval import agreement

# Wikipedia "Krippendorff's alpha", worked example (also fast-krippendorff's sample.py): 3 coders x 15 units.
WIKIPEDIA = """
*    *    *    *    *    3    4    1    2    1    1    3    3    *    3
1    *    2    1    3    3    4    3    *    *    *    *    *    *    *
*    *    2    1    3    4    4    *    2    1    1    3    3    *    4
"""


def _matrix(text):
    return np.array([[np.nan if v == "*" else float(v) for v in line.split()] for line in text.strip().splitlines()])


def test_krippendorff_alpha_on_the_wikipedia_example():
    m = _matrix(WIKIPEDIA)
    assert round(agreement._alpha(m, "nominal", (1, 2, 3, 4)), 3) == 0.691
    assert round(agreement._alpha(m, "interval", (1, 2, 3, 4)), 3) == 0.811


def test_alpha_is_none_when_undefined():
    assert agreement._alpha(np.array([[1.0, np.nan], [np.nan, 2.0]]), "nominal", (1, 2)) is None  # no pairable unit
    assert agreement._alpha(np.array([[1.0, 1.0], [1.0, 1.0]]), "nominal", (1, 2)) is None  # one value only


def _j(who, score, accept=(True, True)):
    return {"evaluator": who, "score": score, "accept": accept}


def test_percent_agreement_gives_half_credit_for_one_tie_only():
    pairs = [(_j("x", 2), _j("y", 1)),     # same winner: 1 strict, 1 relaxed
             (_j("x", 0), _j("y", -1)),    # one tie: 0 strict, 0.5 relaxed
             (_j("x", 0), _j("y", 0)),     # both tie: agree
             (_j("x", 1), _j("y", -2))]    # opposite winners: 0
    a = agreement.percent(pairs)
    assert a["preference_strict"] == pytest.approx(2 / 4) and a["preference_relaxed"] == pytest.approx(2.5 / 4)
    assert agreement.percent([])["acceptance"] is None


def test_cohen_kappa_five_way_is_quadratic_weighted():
    pairs = [(_j("x", 2), _j("y", 1)), (_j("x", -1), _j("y", -1)), (_j("x", 0), _j("y", 2))]
    # Quadratic weights w = (i − j)^2 / 4^2 on the 5 points; x = (2, −1, 0), y = (1, −1, 2).
    # Observed: (1 + 0 + 4)/16 / 3 = 5/48; expected: mean over all 9 (x_i, y_j) of (x_i − y_j)^2/16
    # = (1 + 9 + 0 + 4 + 0 + 9 + 1 + 1 + 4)/16/9 = 29/144; kappa = 1 − (5/48)/(29/144) = 1 − 15/29.
    k = agreement.cohen_kappa(pairs)
    assert k["annotators"] == ["x", "y"] and k["preference_5way_quadratic"] == pytest.approx(1 - 15 / 29)
