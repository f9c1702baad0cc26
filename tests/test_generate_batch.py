"""generate --input/--output: raw prompts and conversations, one record per input id, --ignore_eos, malformed input
named by file:line before any output exists, and resuming: a torn last line and a SIGKILL mid-run both end in the
same file an uninterrupted greedy run writes."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from camel_jax.generate import main

STORY = "Once upon a time, there was a little girl"


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    from test_llama2c import STORIES_BIN, TOK512_BIN
    from camel_jax.convert.llama2c import import_llama2c

    path = str(tmp_path_factory.mktemp("batch") / "ckpt")
    import_llama2c(STORIES_BIN, TOK512_BIN, path)
    return path


def _write(path, records):
    with open(path, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)
    return str(path)


def _read(path):
    with open(path) as f:
        text = f.read()
    assert text.endswith("\n")
    recs = [json.loads(line) for line in text.splitlines()]
    ids = [json.dumps(r["id"]) for r in recs]
    assert len(ids) == len(set(ids)), "duplicated ids"
    return {json.dumps(r["id"]): r for r in recs}


def _records(n):
    animals = ["cat", "dog", "girl", "boy", "bird"]
    return [{"id": i, "prompt": f"Once upon a time, there was a {animals[i % 5]}" + "." * (i // 5)}
            for i in range(n)]


def test_prompts_and_messages(ckpt, tmp_path, capsys):
    from camel_jax.infer.chat import encode_prompt
    from camel_jax.model.tokenizer import load_tokenizer

    conv = [{"role": "user", "content": "Tell me a story."}]
    inp = _write(tmp_path / "in.jsonl", [{"id": "a", "prompt": STORY}, {"id": 2, "messages": conv},
                                         {"id": "c", "prompt": "The dog"}])
    out = str(tmp_path / "out.jsonl")
    assert main(["--checkpoint", ckpt, "--input", inp, "--output", out, "--max_new_tokens", "6"]) == 0
    assert "3 records (0 already done, 3 generated" in capsys.readouterr().err
    got = _read(out)
    assert set(got) == {'"a"', "2", '"c"'}
    assert got['"a"']["output"] == " named Lily. She loved"  # what --prompt prints (test_generate)
    assert got['"a"']["prompt_tokens"] == len(load_tokenizer(ckpt + "/tokenizer").encode(STORY, add_bos=True))
    tulu = encode_prompt(conv, "tulu", load_tokenizer(ckpt + "/tokenizer"))
    assert got["2"]["prompt_tokens"] == len(tulu) and got["2"]["chat_format"] == "tulu"
    for r in got.values():
        assert r["output_tokens"] <= 6 and r["finish_reason"] in ("eos", "stop", "length")
        assert (r["max_new_tokens"], r["temperature"], r["top_p"], r["top_k"], r["seed"]) == (6, 0.0, 1.0, 0, 0)
    # A rerun over a complete file generates nothing and changes nothing.
    before = open(out).read()
    assert main(["--checkpoint", ckpt, "--input", inp, "--output", out, "--max_new_tokens", "6"]) == 0
    assert "(3 already done, 0 generated" in capsys.readouterr().err and open(out).read() == before
    # Resuming with other sampling flags would mix two runs in one file: refused, naming the flag.
    assert main(["--checkpoint", ckpt, "--input", inp, "--output", out, "--max_new_tokens", "7"]) == 2
    assert f"{out}:1: written with --max_new_tokens 6, this run has 7" in capsys.readouterr().err
    assert open(out).read() == before


def test_ignore_eos_decodes_to_max_new_tokens(ckpt, tmp_path):
    inp, out = _write(tmp_path / "in.jsonl", _records(4)), str(tmp_path / "out.jsonl")
    assert main(["--checkpoint", ckpt, "--input", inp, "--output", out, "--max_new_tokens", "300",
                 "--ignore_eos"]) == 0
    got = _read(out)
    assert all(r["output_tokens"] == 300 and r["finish_reason"] == "length" and r["ignore_eos"]
               for r in got.values())


def test_torn_last_line_is_redone(ckpt, tmp_path, capsys):
    inp, ref = _write(tmp_path / "in.jsonl", _records(6)), str(tmp_path / "ref.jsonl")
    flags = ["--checkpoint", ckpt, "--input", inp, "--max_new_tokens", "12"]
    assert main(flags + ["--output", ref]) == 0
    lines = open(ref).read().splitlines(keepends=True)
    out = tmp_path / "out.jsonl"
    out.write_text("".join(lines[:3]) + lines[3][:len(lines[3]) // 2])  # killed in the middle of line 4
    assert main(flags + ["--output", str(out)]) == 0
    assert "(3 already done, 3 generated" in capsys.readouterr().err
    assert _read(str(out)) == _read(ref)


BAD = {
    "bad JSON": ('{"id": 2, "prompt": "x"', "not JSON"),
    "no id": ('{"prompt": "x"}', 'no "id"'),
    "duplicate id": ('{"id": 1, "prompt": "y"}', "duplicate id 1 (first on line 1)"),
    "neither": ('{"id": 2}', 'exactly one of "prompt"'),
    "both": ('{"id": 2, "prompt": "x", "messages": []}', "got both"),
    "bad messages": ('{"id": 2, "messages": [{"role": "user"}]}', "messages[0]"),
    "two messages, format none": ('{"id": 2, "messages": [{"role": "user", "content": "a"}, '
                                  '{"role": "assistant", "content": "b"}]}', "a single message"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_malformed_input_is_one_line_naming_file_and_line(ckpt, tmp_path, capsys, case):
    line, message = BAD[case]
    inp = tmp_path / "in.jsonl"
    inp.write_text('{"id": 1, "prompt": "x"}\n' + line + "\n")
    out = tmp_path / "out.jsonl"
    assert main(["--checkpoint", ckpt, "--input", str(inp), "--output", str(out), "--chat_format", "none"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"python -m camel_jax.generate: error: {inp}:2: ")
    assert message in err and not out.exists()


def _exit_code(argv):
    try:
        return main(argv)
    except SystemExit as e:  # argparse-level errors exit, the run's own errors return
        return e.code


def test_flag_combinations_are_usage_errors(ckpt, tmp_path, capsys):
    for argv in (["--prompt", "x", "--input", "a.jsonl"], [], ["--input", str(tmp_path / "missing.jsonl")],
                 ["--prompt", "x", "--output", "o.jsonl"]):
        assert _exit_code(["--checkpoint", ckpt] + argv) == 2
        assert capsys.readouterr().err.count("\n") == 1


def test_sigkill_mid_run_then_rerun_completes_the_file(ckpt, tmp_path):
    inp = _write(tmp_path / "in.jsonl", _records(30))
    flags = ["--checkpoint", ckpt, "--input", inp, "--max_new_tokens", "200", "--ignore_eos", "--slots", "1"]
    ref = str(tmp_path / "ref.jsonl")
    assert main(flags + ["--output", ref]) == 0
    out = str(tmp_path / "out.jsonl")
    cmd = [sys.executable, "-m", "camel_jax.generate"] + flags + ["--output", out]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300
        while not (os.path.exists(out) and open(out).read().count("\n") >= 1):
            assert proc.poll() is None and time.time() < deadline, "the run ended before writing a line"
            time.sleep(0.02)
        assert proc.poll() is None, "the run finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    written = open(out).read().count("\n")
    assert 1 <= written < 30
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert _read(out) == _read(ref)
