"""AlpacaEval 2's length-controlled win rate: the L1 fit against its closed form, the properties the LC paper states
(win_rate(m, b) = 1 − win_rate(b, m); equal lengths change nothing), and a length-loving judge."""
import numpy as np
import pytest
from scipy import optimize

from camel_jax.evaluate import length_control as lc


def test_l1_fit_matches_its_closed_form():
    # one constant feature, mean label 0.7, n = 100: the L1 optimum has σ(β) = p̄ − 1/(C·n) (subgradient of |β| is 1)
    p = np.array([1.0] * 70 + [0.0] * 30)
    X, w = np.ones((100, 1)), np.ones(100)
    for C in (0.1, 0.05, 1.0):
        beta = lc.fit_l1_logistic(X, p, w, C)
        assert 1 / (1 + np.exp(-beta[0])) == pytest.approx(0.7 - 1 / (C * 100), abs=1e-6)
    assert lc.fit_l1_logistic(X, p, w, 1 / (100 * 0.2))[0] == pytest.approx(0.0, abs=1e-7)  # penalty wins: β = 0
    # soft labels are the same problem as AlpacaEval's duplicated y=1/y=0 rows weighted p and 1−p
    soft = np.array([0.5, 1.0, 0.0, 1.0])
    dup_X, dup_y = np.ones((8, 1)), np.array([1, 1, 1, 1, 0, 0, 0, 0], float)
    dup_w = np.concatenate([soft, 1 - soft])
    assert lc.fit_l1_logistic(np.ones((4, 1)), soft, np.ones(4), 3.0) == pytest.approx(
        lc.fit_l1_logistic(dup_X, dup_y, dup_w, 3.0), abs=1e-7)


def _scipy_l1(X, p, w, C):
    """The same objective on the split form β = β⁺ − β⁻, β± ≥ 0, by scipy's L-BFGS-B: the reference solver."""
    k = X.shape[1]

    def fun(v):
        beta = v[:k] - v[k:]
        z = X @ beta
        g = C * (X.T @ (w * (1 / (1 + np.exp(-z)) - p)))
        return v.sum() + C * np.sum(w * (np.logaddexp(0, -z) * p + np.logaddexp(0, z) * (1 - p))), \
            np.concatenate([1 + g, 1 - g])

    res = optimize.minimize(fun, np.zeros(2 * k), jac=True, method="L-BFGS-B", bounds=[(0, None)] * (2 * k),
                            options={"maxiter": 10_000, "ftol": 1e-15, "gtol": 1e-10})
    return res.x[:k] - res.x[k:]


def test_l1_fit_agrees_with_scipy():
    rng = np.random.default_rng(0)
    n = 240
    X = np.c_[np.tanh(rng.normal(size=n)), rng.normal(size=n), np.ones(n)]
    p = np.clip(0.5 + 0.3 * X[:, 0] + 0.2 * rng.normal(size=n), 0, 1)
    w = rng.uniform(0.1, 1.0, n)
    for C in lc.CS[4:]:  # below these the penalty zeroes every coefficient
        assert lc.fit_l1_logistic(X, p, w, C) == pytest.approx(_scipy_l1(X, p, w, C), abs=1e-6)


def _length_loving_judge(seed, n=805, theta=0.0, phi=1.5):
    rng = np.random.default_rng(seed)
    len_model, len_ref = rng.integers(200, 1500, n), rng.integers(200, 800, n)
    z = theta + phi * np.tanh((len_model - len_ref) / np.std(len_model - len_ref, ddof=1))
    wins = rng.random(n) < 1 / (1 + np.exp(-z))
    return np.where(wins, 2, 1), len_model, len_ref


def test_equal_lengths_leave_the_win_rate_alone():
    rng = np.random.default_rng(1)
    prefs = rng.choice([1, 2, 0], size=805, p=[0.5, 0.4, 0.1])
    raw = 100 * np.mean([lc.preference_to_prob(x) for x in prefs])
    out = lc.length_controlled_winrate(prefs, [300] * 805, [300] * 805)
    assert out["length_controlled_winrate"] == pytest.approx(raw, abs=0.1)
    assert out["lc_coefficients"]["length"] == 0.0
    assert 1.0 < out["lc_standard_error"] < 2.5  # ≈ the raw win rate's own SE, 100·sd/√805 ≈ 1.7


def test_a_length_loving_judge_is_corrected():
    prefs, len_model, len_ref = _length_loving_judge(0)  # equal quality (θ = 0), the judge likes length
    out = lc.length_controlled_winrate(prefs, len_model, len_ref)
    raw = 100 * np.mean(prefs == 2)
    assert raw > 60 and out["length_controlled_winrate"] < raw - 8
    assert abs(out["length_controlled_winrate"] - 50) < 3 * out["lc_standard_error"]
    assert out["lc_coefficients"]["length"] < -1  # Δ = len(reference) − len(model): longer model → larger logit
    assert out["lc_terms"] == "model+length" and out["lc_C"] in lc.CS


def test_swapping_model_and_reference_mirrors_the_lc_win_rate():
    prefs, len_model, len_ref = _length_loving_judge(2, n=300, theta=0.4)
    a = lc.length_controlled_winrate(prefs, len_model, len_ref)["length_controlled_winrate"]
    b = lc.length_controlled_winrate(3 - prefs, len_ref, len_model)["length_controlled_winrate"]
    assert a + b == pytest.approx(100.0, abs=1e-4)


def test_difficulty_and_gamed_rows_enter_the_design():
    prefs, len_model, len_ref = _length_loving_judge(3, n=200)
    diff = np.linspace(-1, 1, 200)
    out = lc.length_controlled_winrate(prefs, len_model, len_ref, difficulty=diff,
                                       gamed={"preference": [0.2, 0.8], "std_delta_len": [1.0, -1.0],
                                              "instruction_difficulty": [0.0, 0.0]})
    assert out["lc_terms"] == "model+length+difficulty+gamed"
    assert set(out["lc_coefficients"]) == {"length", "instruction_difficulty", "model"}
    with pytest.raises(ValueError, match="need the instruction difficulty"):
        lc.length_controlled_winrate(prefs, len_model, len_ref, gamed={"preference": [0.5]})
    with pytest.raises(ValueError, match="one model and one reference length per preference"):
        lc.length_controlled_winrate(prefs, len_model[:-1], len_ref)


def test_extreme_change_rule():
    assert not lc.is_extreme_change(50, 60) and lc.is_extreme_change(50, 63) and lc.is_extreme_change(20, 9)


def _sklearn_lc(prefs, len_model, len_ref, difficulty=None, gamed=None):
    """alpaca_eval's own estimator, configured as its `fit_LogisticRegressionCV` (soft-label branch) is: each row
    duplicated as y=1 / y=0 weighted p / 1−p (times the gamed rows' λ/2), GroupKFold(5) over the original rows
    (gamed rows first), a weighted log-loss scorer, L1 liblinear without intercept, random_state 123; predicted
    for the model's rows with the length term zeroed."""
    sklearn = pytest.importorskip("sklearn", reason="scikit-learn (the test extra) is alpaca_eval's estimator")
    import warnings

    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.metrics import make_scorer
    from sklearn.model_selection import GroupKFold

    def weighted_log_loss(y_true, y_pred, true_prob, true_sample_weight):
        target = np.where(y_true == 1, true_prob, 1 - true_prob)
        y_pred = np.clip(y_pred, 1e-15, 1 - 1e-15)
        return -np.mean(true_sample_weight * (target * np.log(y_pred) + (1 - target) * np.log(1 - y_pred)))

    p = np.array([lc.preference_to_prob(x) for x in prefs])
    n, delta = len(p), np.asarray(len_ref, float) - np.asarray(len_model, float)
    cols = [np.tanh(delta / np.std(delta, ddof=1))] + ([] if difficulty is None else [np.asarray(difficulty)])
    X, X_test = np.c_[tuple(cols) + (np.ones(n),)], np.c_[tuple([np.zeros(n)] + cols[1:]) + (np.ones(n),)]
    w = np.ones(n)
    if gamed is not None:
        Xg = np.c_[np.tanh(gamed["std_delta_len"]), gamed["instruction_difficulty"], np.zeros(len(gamed["preference"]))]
        X, p = np.r_[Xg, X], np.r_[gamed["preference"], p]
        w = np.r_[np.full(len(Xg), 0.1), w]
    m = len(p)
    prob, weight = np.r_[p, 1 - p], np.r_[w, w]
    with sklearn.config_context(enable_metadata_routing=True), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # liblinear/penalty deprecation notices of newer releases
        scorer = make_scorer(weighted_log_loss, response_method="predict_proba",
                             greater_is_better=False).set_score_request(true_prob=True, true_sample_weight=True)
        model = LogisticRegressionCV(cv=GroupKFold(n_splits=5), scoring=scorer, random_state=123, penalty="l1",
                                     solver="liblinear", fit_intercept=False).set_fit_request(sample_weight=True)
        model.fit(np.r_[X, X], np.r_[np.ones(m), np.zeros(m)], sample_weight=prob * weight,
                  groups=np.r_[np.arange(m), np.arange(m)], true_prob=prob, true_sample_weight=weight)
        lc_rate = 100 * model.predict_proba(X_test)[:, 1].mean()
    return lc_rate, float(model.C_[0])


@pytest.mark.parametrize("seed,n,theta,draws", [(1, 805, 0.5, 0.1), (3, 100, 1.0, 0.0)])
def test_lc_agrees_with_alpaca_evals_sklearn_estimator(seed, n, theta, draws):
    prefs, len_model, len_ref = _length_loving_judge(seed, n=n, theta=theta)
    prefs = np.where(np.random.default_rng(9).random(n) < draws, 0, prefs)
    ours = lc.length_controlled_winrate(prefs, len_model, len_ref)
    theirs, C = _sklearn_lc(prefs, len_model, len_ref)
    assert ours["lc_C"] == C
    assert ours["length_controlled_winrate"] == pytest.approx(theirs, abs=0.01)  # liblinear's tol is 1e-4


def test_lc_with_difficulty_and_gamed_rows_agrees_with_sklearn():
    n = 300
    prefs, len_model, len_ref = _length_loving_judge(4, n=n, theta=0.3)
    rng = np.random.default_rng(5)
    difficulty = rng.normal(size=n)
    gamed = {"preference": rng.random(2 * n), "std_delta_len": rng.normal(size=2 * n),
             "instruction_difficulty": np.r_[difficulty, difficulty]}
    ours = lc.length_controlled_winrate(prefs, len_model, len_ref, difficulty=difficulty, gamed=gamed)
    theirs, C = _sklearn_lc(prefs, len_model, len_ref, difficulty=difficulty, gamed=gamed)
    assert ours["lc_C"] == C and ours["length_controlled_winrate"] == pytest.approx(theirs, abs=0.01)
