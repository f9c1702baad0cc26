"""AlpacaFarm judged by a real `python -m camel_jax.serve` on 127.0.0.1: the evaluate command's judge flags against
camel_jax's own OpenAI-compatible server (a separate process on a free port, the tiny random checkpoint), so the
wire format is the server's, not a fake's. A random model answers gibberish: every verdict must come back counted
as unparseable with the server's very reply kept, never a tie; the 5-pair template's prompt is longer than the
tiny model's context, so the server refuses it (HTTP 400) and those pairs are counted as refused."""
import json
import os
import socket
import subprocess
import sys
import time

import httpx
import pytest
from eval_util import read_json, saved_preds

from camel_jax.evaluate import judge as J
from camel_jax.evaluate.__main__ import main

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARGS = ["--no_progress", "--sandbox_workers", "1"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(proc, url: str, timeout: float = 240.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"camel_jax.serve exited with {proc.returncode}: {proc.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    pytest.fail(f"camel_jax.serve not healthy at {url} after {timeout} s")


@pytest.fixture(scope="module")
def served(eval_ckpt):
    """(base URL, model name) of camel_jax.serve on the tiny checkpoint; stopped after the module."""
    port = _free_port()
    env = dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=1")
    proc = subprocess.Popen([sys.executable, "-m", "camel_jax.serve", "--checkpoint", eval_ckpt, "--port", str(port),
                             "--slots", "2", "--model_name", "tiny-judge", "--log_level", "warning"],
                            env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        yield proc, f"http://127.0.0.1:{port}", "tiny-judge"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def outputs(eval_ckpt, eval_data, tmp_path_factory, served):
    """Three AlpacaFarm items generated (not judged) while the server starts up."""
    out = str(tmp_path_factory.mktemp("served_judge") / "eval")
    assert main(["--checkpoint", eval_ckpt, "--data_dir", eval_data, "--out", out, "--tasks", "alpaca_farm",
                 "--max_examples", "3", "--max_new_tokens", "4", "--slots", "4"] + ARGS) == 0
    assert read_json(out, "alpaca_farm", "metrics.json")["status"] == "not judged"
    proc, url, _ = served
    _wait_healthy(proc, url)
    return out


def test_single_pair_judge_on_a_served_model_counts_its_gibberish(outputs, served, eval_data, capsys):
    _, url, model = served
    flags = ["--judge_url", url + "/v1", "--judge_model", model, "--judge_template", "alpaca_eval_gpt4"]
    assert main(["rescore", "--out", outputs] + ARGS + flags) == 0
    assert "alpaca_farm: win_rate judge unparseable over 3 items" in capsys.readouterr().err
    m = read_json(outputs, "alpaca_farm", "metrics.json")
    assert m["judged"] and m["judge_model"] == model and m["judge_url"] == url + "/v1/chat/completions"
    assert m["n_unparseable"] == 3 and m["n_refused"] == 0 and m["win_rate"] is None
    assert read_json(outputs, "table.json")["columns"][-1]["status"] == "judge unparseable"
    template = J.load_template("alpaca_eval_gpt4", eval_data)
    preds = saved_preds(outputs, "alpaca_farm")
    for bad in m["unparseable"]:  # the reply kept is the server's own greedy answer to the judge's request
        rec = preds[bad["id"]]
        assert rec["correct"] is None and rec["judgment"]["preference"] is None
        ref, out = rec["gold"]["reference"], rec["answer"]
        swapped = rec["judgment"]["swapped"]
        shown = {"instruction": rec["meta"]["instruction"], "output_1": out if swapped else ref,
                 "output_2": ref if swapped else out}
        body = {"model": model, "messages": J.to_messages(J.fill(template, [shown])), "temperature": 0.0,
                "max_tokens": template.max_tokens}
        reply = httpx.post(url + "/v1/chat/completions", json=body, timeout=120).json()
        text = reply["choices"][0]["message"]["content"]
        assert bad["raw"] == text[:500] and text and J.parse(template, text) is None
    assert not os.path.exists(os.path.join(outputs, "alpaca_farm", "judge_cache.jsonl")) or not open(
        os.path.join(outputs, "alpaca_farm", "judge_cache.jsonl")).read()  # unparseable: never cached


def test_five_pair_prompt_beyond_the_served_context_is_refused_not_a_tie(outputs, served):
    _, url, model = served
    flags = ["--judge_url", url + "/v1", "--judge_model", model]  # the paper's alpaca_farm_greedy_gpt4
    assert main(["rescore", "--out", outputs] + ARGS + flags) == 0
    m = read_json(outputs, "alpaca_farm", "metrics.json")
    assert m["n_refused"] == 3 and m["n_unparseable"] == 0 and m["win_rate"] is None
    assert m["status"] == "judge refused" and m["note"].endswith("0 unparseable, 3 refused")
    for r in m["refused"]:
        assert r["error"].startswith("HTTP 400") and "context_length_exceeded" in r["error"]
    assert all(json.loads(line)["correct"] is None
               for line in open(os.path.join(outputs, "alpaca_farm", "predictions.jsonl")))
