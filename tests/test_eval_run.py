"""`python -m camel_jax.evaluate` end to end on a tiny model with the real LLaMA tokenizer: the files it writes,
choice log-probs against a plain forward pass, rescore reproducing the saved metrics, equal results on a dp4,mp2
mesh of simulated devices with 8 slots and on one device with 4 (and, in the kill test, with 1), a torn predictions
file and a SIGKILLed process each continued to the uninterrupted result, the protocols' BOS and stop handling, and
one-line usage errors."""
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from eval_util import read_json, saved_preds

from camel_jax.evaluate.__main__ import main
from camel_jax.evaluate import gsm, records, run

ARGS = ["--max_examples", "2", "--max_new_tokens", "8", "--no_progress"]
TASKS = ("mmlu_0shot", "mmlu_5shot", "gsm_direct", "gsm_cot")
PAIR = ("mmlu_5shot", "gsm_cot")  # one choice and one generate task: the reruns below (new shapes compile anew)


@pytest.fixture(scope="module")
def first(eval_ckpt, eval_data, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("eval_out") / "a")
    assert main(["--checkpoint", eval_ckpt, "--data_dir", eval_data, "--out", out, "--slots", "4",
                 "--tasks", "mmlu,gsm"] + ARGS) == 0
    return out


def test_files_records_and_table(first, eval_ckpt, eval_data):
    import jax

    from camel_jax import params_io
    from camel_jax.model.llama import Llama
    from camel_jax.model.tokenizer import load_tokenizer

    tok = load_tokenizer(os.path.join(eval_ckpt, "tokenizer"))
    params, cfg = params_io.load_params(eval_ckpt)
    for task in TASKS:
        preds, metrics, rec = saved_preds(first, task), read_json(first, task, "metrics.json"), read_json(first, task, "run.json")
        assert list(preds) == rec["ids"] and len(preds) == 2 and metrics["complete"]
        assert rec["protocol"] == "fixed" and rec["counts"]["selected"] == 2 and rec["git_commit"]
        assert rec["sessions"][0]["new_items"] == 2 and rec["sessions"][0]["prompt_tokens"] > 0
        for r in preds.values():
            assert r["prompt_tokens"] == len(tok.encode(r["prompt"], add_bos=True))  # fixed: BOS
    mmlu0 = saved_preds(first, "mmlu_0shot")
    assert list(mmlu0) == ["abstract_algebra/0", "anatomy/0"]  # --max_examples spreads over subjects
    for r in mmlu0.values():  # the scorer's log-probs against one plain forward pass over the prompt
        ids = np.asarray([tok.encode(r["prompt"], add_bos=True)], np.int32)
        logits = jax.jit(Llama(cfg.replace(dtype="float32")).apply)({"params": params}, ids)[0][0, -1]
        ref = np.asarray(jax.nn.log_softmax(logits))[[319, 350, 315, 360]]
        assert np.allclose([r["logprobs"][c] for c in "ABCD"], ref, atol=1e-4)
        assert r["answer"] == "ABCD"[int(np.argmax(ref))] and r["correct"] == (r["answer"] == r["gold"])
    for r in saved_preds(first, "gsm_cot").values():
        assert r["output"] == run.truncate(r["generation"], ["\n"]) and r["answer"] == gsm.extract(r["output"])
        assert 1 <= r["output_tokens"] <= 8 and r["max_new_tokens"] == 8
    t = read_json(first, "table.json")
    assert [c["status"] for c in t["columns"]] == ["ok"] * 4 + ["not run"] * 7
    assert t["columns"][0]["value"] == read_json(first, "mmlu_0shot", "metrics.json")["accuracy"]
    assert "| tiny |" in open(os.path.join(first, "table.md")).read()


def test_rescore_reproduces_the_saved_metrics(first, tmp_path):
    out = str(tmp_path / "copy")
    shutil.copytree(first, out)
    saved = {t: read_json(out, t, "metrics.json") for t in TASKS}
    table = open(os.path.join(out, "table.md")).read()
    for t in TASKS:
        os.remove(os.path.join(out, t, "metrics.json"))
    assert main(["rescore", "--out", out]) == 0
    assert {t: read_json(out, t, "metrics.json") for t in TASKS} == saved
    assert open(os.path.join(out, "table.md")).read() == table


def _same(a, b, tasks=PAIR):
    """b holds a's records (each id once, equal but for the last float bits of log-probs) and a's metrics."""
    for task in tasks:
        pa = saved_preds(a, task)
        lines = [r["id"] for r in _lines(b, task)]
        assert len(lines) == len(set(lines)) and set(pa) <= set(lines), task  # nothing lost, nothing twice
        pb = saved_preds(b, task)
        for i in pa:
            x, y = dict(pa[i]), dict(pb[i])
            lx, ly = x.pop("logprobs", None), y.pop("logprobs", None)
            assert x == y, (task, i)
            if lx is not None:  # batch composition may move the last float bits, never the answer
                assert np.allclose(list(lx.values()), list(ly.values()), atol=1e-5)
        assert read_json(a, task, "metrics.json") == read_json(b, task, "metrics.json")


def _lines(out, task):
    import json

    with open(os.path.join(out, task, records.PREDICTIONS)) as f:
        return [json.loads(line) for line in f]


def test_a_dp4_mp2_mesh_with_eight_slots_equals_one_device_with_four(first, eval_ckpt, eval_data, tmp_path):
    """--mesh on 8 simulated devices (tests/conftest.py): weights split over mp, rows over dp, for the scorer
    (MMLU) and the engine (GSM); another slot count too, so one run checks both invariances."""
    out = str(tmp_path / "b")
    assert main(["--checkpoint", eval_ckpt, "--data_dir", eval_data, "--out", out, "--slots", "8",
                 "--mesh", "dp4,mp2", "--tasks", ",".join(PAIR)] + ARGS) == 0
    _same(first, out)


def test_sigkilled_run_continues_to_the_uninterrupted_result(first, eval_ckpt, eval_data, tmp_path):
    """A real `python -m camel_jax.evaluate` process, one slot, SIGKILLed as soon as its generate task has written
    a record (MMLU 5-shot done, GSM CoT under way, no metrics yet), then rerun on the same --out. The killed run
    selected 4 items so that the kill lands with items still to do; the rerun asks for 2, the same first two
    (--max_examples is nested), and must end exactly where the uninterrupted 4-slot run `first` did."""
    out = str(tmp_path / "k")
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
               JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=1")
    argv = ["--checkpoint", eval_ckpt, "--data_dir", eval_data, "--out", out, "--tasks", ",".join(PAIR)]
    proc = subprocess.Popen([sys.executable, "-m", "camel_jax.evaluate"] + argv + [
        "--slots", "1", "--max_examples", "4", "--max_new_tokens", "8", "--no_progress"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    gsm = os.path.join(out, "gsm_cot", records.PREDICTIONS)
    try:
        deadline = time.time() + 300
        while not (os.path.exists(gsm) and b"\n" in open(gsm, "rb").read()):
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.time() < deadline, "no GSM record within 300 s"
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    assert len(_lines(out, "mmlu_5shot")) == 4 and 1 <= open(gsm, "rb").read().count(b"\n") < 4  # mid-task
    assert not any(os.path.exists(os.path.join(out, t, f)) for t in PAIR for f in ("metrics.json", "run.json"))
    assert main(argv + ARGS + ["--slots", "4"]) == 0
    _same(first, out)
    assert read_json(out, "mmlu_5shot", "run.json")["sessions"][0]["new_items"] == 0  # all from the killed run


def test_torn_predictions_continue_to_the_uninterrupted_result(first, eval_ckpt, eval_data, tmp_path):
    out = str(tmp_path / "c")
    shutil.copytree(first, out)
    for task in PAIR:  # as a kill leaves them: the first record, half of the second, no metrics yet
        path = os.path.join(out, task, records.PREDICTIONS)
        lines = open(path).read().splitlines(keepends=True)
        with open(path, "w") as f:
            f.write(lines[0] + lines[1][:len(lines[1]) // 2])
        os.remove(os.path.join(out, task, "metrics.json"))
    assert main(["--checkpoint", eval_ckpt, "--data_dir", eval_data, "--out", out, "--slots", "4",
                 "--tasks", "mmlu,gsm"] + ARGS) == 0
    _same(first, out, TASKS)
    sessions = read_json(out, "gsm_cot", "run.json")["sessions"]
    assert [s["resumed_with"] for s in sessions] == [0, 1] and sessions[1]["new_items"] == 1


def test_rerun_with_other_identity_is_refused(first, eval_ckpt, eval_data, capsys):
    for flag, value in (("--protocol", "paper"), ("--chat_format", "none"), ("--max_new_tokens", "9")):
        argv = ["--checkpoint", eval_ckpt, "--data_dir", eval_data, "--out", first, "--tasks", "gsm"] + ARGS \
            + [flag, value]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"error: {flag} " in err and "choose another --out" in err


def test_protocols_bos_and_stops(first, eval_ckpt, eval_data, tmp_path, monkeypatch):
    """fixed: BOS, and the engine stops at a stop string; paper: no BOS, decoding runs on and the text is cut after.
    The stop is a piece of the fixed run's own greedy text (the random model never writes GSM's newline)."""
    import dataclasses

    from camel_jax.evaluate import registry
    from camel_jax.model.tokenizer import load_tokenizer

    r0 = next(iter(saved_preds(first, "gsm_direct").values()))
    gen = r0["generation"]
    stop = gen[len(gen) // 4:len(gen) // 4 + 2]
    s = registry.SETTINGS["gsm_direct"]
    monkeypatch.setitem(registry.SETTINGS, "gsm_direct",
                        dataclasses.replace(s, decoding=dataclasses.replace(s.decoding, stop=(stop,))))
    one = ["--max_examples", "1", "--max_new_tokens", "8", "--no_progress"]
    fixed = str(tmp_path / "f")
    assert main(["--checkpoint", eval_ckpt, "--data_dir", eval_data, "--out", fixed, "--tasks", "gsm_direct"]
                + one) == 0
    (f,) = saved_preds(fixed, "gsm_direct").values()
    assert f["id"] == r0["id"] and f["finish_reason"] == "stop" and f["output_tokens"] < 8
    assert f["output"] == f["generation"] == gen[:gen.find(stop)]
    paper = str(tmp_path / "p")
    assert main(["--checkpoint", eval_ckpt, "--data_dir", eval_data, "--out", paper, "--protocol", "paper", "--tasks",
                 "mmlu_0shot,gsm_direct"] + one) == 0
    tok = load_tokenizer(os.path.join(eval_ckpt, "tokenizer"))
    for task in ("mmlu_0shot", "gsm_direct"):
        (r,) = saved_preds(paper, task).values()
        assert r["prompt_tokens"] == len(tok.encode(r["prompt"])) and tok.encode(r["prompt"])[0] != tok.bos_id
    (p,) = saved_preds(paper, "gsm_direct").values()
    assert "Quesion: " in p["prompt"] and p["finish_reason"] in ("length", "eos")
    assert p["output"] == run.truncate(p["generation"], [stop])
    assert p["finish_reason"] == "eos" or p["output_tokens"] == 8


def test_list_and_usage_errors(eval_ckpt, eval_data, tmp_path, capsys):
    assert main(["--list"]) == 0
    assert "gsm_cot" in capsys.readouterr().out
    base = ["--checkpoint", eval_ckpt, "--data_dir", eval_data, "--out", str(tmp_path / "e")]
    for argv, match in (
            (base + ["--tasks", "gsm,nope"], "unknown task 'nope'"),
            (base + ["--max_examples", "0"], "--max_examples must be >= 1"),
            (base + ["--protocol", "june"], "--protocol"),
            (base + ["--data_dir", str(tmp_path / "none")], "--data_dir"),
            (["--out", str(tmp_path / "e")], "--checkpoint"),
            (["--checkpoint", str(tmp_path), "--out", str(tmp_path / "e"), "--data_dir", eval_data], str(tmp_path)),
            (base + ["--frobnicate"], "unrecognized flag --frobnicate"),
            (["rescore", "--out", str(tmp_path)], "not an evaluation folder")):
        code = _exit_code(argv)
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and "error:" in err and match in err, (argv, err)
    assert not os.path.exists(tmp_path / "e" / "mmlu_0shot")  # nothing written for a refused run


def _exit_code(argv):
    try:
        return main(argv)
    except SystemExit as e:  # argparse's errors exit from inside
        return e.code


def test_seqio_evaluator_on_the_engine_reports_the_driver_metrics(first, eval_ckpt, eval_data):
    """The SeqIO tasks run through seqio.Evaluator, the engine as predict_fn and the scorer as score_fn."""
    pytest.importorskip("seqio")
    from camel_jax import params_io
    from camel_jax.evaluate import registry, seqio_tasks
    from camel_jax.model.tokenizer import load_tokenizer

    tok_dir = os.path.join(eval_ckpt, "tokenizer")
    seqio_tasks.register_tasks(tok_dir, eval_data, "fixed", "tulu", names=["mmlu_0shot", "gsm_cot"])
    params, cfg = params_io.load_params(eval_ckpt)
    fns = {}
    for name, rows in (("mmlu_0shot", 2 * 4), ("gsm_cot", 2)):
        fns[name] = seqio_tasks.model_fns(params, cfg, load_tokenizer(tok_dir), registry.SETTINGS[name], "fixed",
                                          max_new_tokens=8)
        task = seqio_tasks.PREFIX + name
        metrics, _ = seqio_tasks.evaluator(task, rows).evaluate(compute_metrics=True, predict_fn=fns[name][0],
                                                                score_fn=fns[name][1])
        got = metrics.result()[task]
        want = {k: v for k, v in read_json(first, name, "metrics.json").items()
                if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("records", "selected")}
        assert got == pytest.approx(want), name


def test_hf_chat_format_is_the_tokenizers_template_with_one_bos(smollm2):
    from camel_jax.cli import UsageError
    from camel_jax.evaluate.task import encode_prompt
    from camel_jax.infer import chat
    from camel_jax.model.tokenizer import load_tokenizer

    tok = load_tokenizer(smollm2.tokenizer_dir)
    prompt = run.make_render("hf", tok, True)("  Q?\n", "Answer:", "plain")
    ids = encode_prompt(tok, prompt, add_bos=True)  # the template's own <|im_start|> is SmolLM2's BOS: no second
    assert ids == chat.encode_prompt("Q?", "hf", tok) + tok.encode("Answer:") and ids.count(tok.bos_id) == 3
    assert ids == encode_prompt(tok, prompt, add_bos=False) and prompt.startswith("<|im_start|>system\n")
    assert run.make_render("hf", tok, False)("Q?", "Answer:", "plain") == "plain"  # a task run without chat
    with pytest.raises(UsageError, match="no chat_template"):
        run.make_render("hf", _NoTemplate(), True)


class _NoTemplate:
    path = "/nowhere"
    _sp = None
    _hf = type("HF", (), {"chat_template": None})()
