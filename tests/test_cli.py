"""Every command follows camel_jax.cli's convention: a user's mistake is one line `<prog>: error: ...` naming the
flag, field or file, exit code 2, no traceback; checks that need no data leave the output dir untouched."""
import json
import os
import subprocess
import sys

import pytest

from camel_jax.data.converters.flan import FLAN_V2_PORTIONS

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMANDS = ("train", "data", "convert", "generate")


def _run(cmd, *args, devices=1, env=None, timeout=300):
    env = dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3",
               XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", **(env or {}))
    env.pop("CAMEL_JAX_DATA_DIR", None)
    return subprocess.run([sys.executable, "-m", f"camel_jax.{cmd}", *map(str, args)], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


def _error_line(p, *needles) -> str:
    assert p.returncode == 2, f"exit {p.returncode}\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}"
    assert "Traceback" not in p.stderr, p.stderr[-3000:]
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, p.stderr[-3000:]
    assert lines[0].startswith("python -m camel_jax.") and ": error: " in lines[0], lines[0]
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("cmd", COMMANDS)
def test_unknown_flag_is_one_line(cmd):
    _error_line(_run(cmd, "--no-such-flag-xyz"), f"python -m camel_jax.{cmd}", "no-such-flag-xyz")


@pytest.mark.parametrize("args,needles", [
    (["--config=configs/tulu.py:llama-7b,nope"], ["--config=configs/tulu.py:llama-7b,nope", "'nope'"]),
    (["--config=configs/tulu.py:llama-8b,dolly"], ["llama-8b", "llama-65b"]),
    (["--config=camel_jax/train/config.py:nope"], ["unknown variant 'nope'", "base"]),
    (["--config=configs/default.py:x"], ["configs/default.py takes no variant"]),
    (["--config=configs/nope.py"], ["--config=configs/nope.py", "no such config file"]),
    (["--config.train.learning_rate=1e-5"], ["--config.train.learning_rate", "config.train has no field", "lr"]),
    (["--config=configs/tulu.py:llama-7b,dolly", "--config.data.nope.x=1"], ["config.data has no field 'nope'"]),
    (["--config.train.lr=abc"], ["--config.train.lr=abc"]),
    (["--config.data.mixture=nope"], ["config.data.mixture='nope'"]),
    (["--mesh=qq"], ["--mesh='qq'"]),
    (["stray"], ["stray"]),
])
def test_train_config_errors_are_one_line_and_write_nothing(tmp_path, args, needles):
    out = tmp_path / "out"
    _error_line(_run("train", *args, f"--output_dir={out}"), *needles)
    assert not out.exists()


def test_train_help_lists_variants_and_fields():
    p = _run("train", "--help")
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr[-2000:]
    for s in ("configs/tulu.py:<size>,<data>", "llama-65b", "tulu_human_gpt_mix", "sharegpt", "default", "base",
              "data.mixture", "data.packing", "train.batch_size", "train.lr", "init_from", "--mesh"):
        assert s in p.stdout, s


def test_train_corrupt_checkpoint_config_is_one_line(tmp_path):
    ckpt, out = tmp_path / "ckpt", tmp_path / "out"
    (ckpt / "params").mkdir(parents=True)
    (ckpt / "model_config.json").write_text('{"vocab_size": 32')
    _error_line(_run("train", f"--init_from={ckpt}", f"--output_dir={out}"), f"--init_from={ckpt}",
                f"{ckpt}/model_config.json", "invalid JSON")
    (ckpt / "model_config.json").write_text('{"vocab_size": 32, "hiden_size": 8}')
    _error_line(_run("train", f"--init_from={ckpt}", f"--output_dir={out}"), "model_config.json", "hiden_size")
    assert not out.exists()


def test_train_mesh_check_runs_before_the_data_and_leaves_nothing(tmp_path):
    out = tmp_path / "out"
    _error_line(_run("train", "--mesh=mp8", f"--output_dir={out}", devices=8), "--mesh=mp8",
                "num_kv_heads 4 is not divisible by mp=8")
    assert not out.exists()


def test_train_data_errors_name_the_file_and_only_its_own_flags(tmp_path):
    bad, out = tmp_path / "bad.jsonl", tmp_path / "out"
    bad.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\nnot json\n")
    p = _run("train", f"--config.data.mixture={bad}", "--config.data.holdout=0", f"--output_dir={out}")
    _error_line(p, f"{bad}: line 2", "invalid_json")
    assert "skip_bad_records" not in p.stderr and not out.exists()
    p = _run("train", "--config.data.mixture=dolly", f"--output_dir={out}")  # no data dir anywhere
    line = _error_line(p, "--config.data.data_dir", "CAMEL_JAX_DATA_DIR")
    assert "pass --data_dir" not in line and not out.exists()


def test_data_stats_errors_are_one_line(tmp_path, shared_data):
    tok = shared_data / "llama_tokenizer"
    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json\n")
    cases = [(["--mixture", "nope", "--tokenizer", tok], ["--mixture nope", "unknown dataset or mixture 'nope'"]),
             (["--mixture", "tulu_human_mix", "--tokenizer", tok], ["pass --data_dir", "CAMEL_JAX_DATA_DIR"]),
             (["--mixture", "dolly", "--data_dir", tmp_path, "--tokenizer", tok], [f"{tmp_path}/dolly.jsonl"]),
             (["--mixture", bad, "--tokenizer", tok], [f"{bad}: line 1", "invalid_json"]),
             (["--mixture", "tulu_mix_sample", "--tokenizer", tmp_path / "none"], ["--tokenizer", "none"]),
             (["--mixture", "tulu_mix_sample", "--tokenizer", tok, "--max_seq_length", "x"], ["--max_seq_length"]),
             (["--mixture", "tulu_mix_sample"], ["--tokenizer"])]
    for args, needles in cases:
        p = _run("data", "stats", *args)
        _error_line(p, "python -m camel_jax.data stats: error:", *needles)
        assert "skip_bad_records" not in p.stderr


def test_flan_v2_error_names_every_accepted_input(tmp_path):
    for raw in (tmp_path / "nothing", tmp_path):
        line = _error_line(_run("data", "prepare", "--dataset", "flan_v2", "--raw", raw, "--out", tmp_path / "o.jsonl"),
                           str(raw), "flan_v2_resampled_100k.jsonl")
        assert all(f"{s}.jsonl" in line for s in FLAN_V2_PORTIONS), line
    assert not (tmp_path / "o.jsonl").exists()


def test_convert_and_generate_file_errors_are_one_line(tmp_path):
    _error_line(_run("convert", "import-hf", tmp_path / "nope", tmp_path / "ck"), f"{tmp_path}/nope")
    _error_line(_run("convert", "export-hf", tmp_path / "nope", tmp_path / "hf"), f"{tmp_path}/nope")
    _error_line(_run("generate", "--checkpoint", tmp_path / "nope", "--prompt", "hi"), f"{tmp_path}/nope")
    _error_line(_run("generate", "--checkpoint", tmp_path / "nope"), "--prompt")
    assert sorted(os.listdir(tmp_path)) == []


def test_train_unreadable_tokenizer_is_one_line(tmp_path):
    from camel_jax.model.config import get_preset
    from camel_jax.params_io import config_to_dict

    ckpt, out = tmp_path / "ckpt", tmp_path / "out"
    (ckpt / "params").mkdir(parents=True)
    (ckpt / "tokenizer").mkdir()
    (ckpt / "model_config.json").write_text(json.dumps(config_to_dict(get_preset("stories260k"))))
    (ckpt / "tokenizer" / "tokenizer.model").write_bytes(b"not a sentencepiece model")
    _error_line(_run("train", f"--init_from={ckpt}", f"--output_dir={out}"), "--init_from", f"{ckpt}/tokenizer")
    assert not out.exists()


def test_data_prepare_corrupt_archive_is_one_line(tmp_path):
    raw = tmp_path / "dolly.jsonl.gz"
    raw.write_bytes(b"not gzip at all")
    _error_line(_run("data", "prepare", "--dataset", "dolly", "--raw", raw, "--out", tmp_path / "o.jsonl"),
                f"{raw}: not a readable gzip file")
    assert sorted(os.listdir(tmp_path)) == ["dolly.jsonl.gz"]


def test_train_tokenizer_larger_than_the_model_is_one_line(tmp_path):
    """Ids past vocab_size would index zero padding rows of the embedding (model/vocab.py): refused up front."""
    from camel_jax.convert.llama2c import read_tokenizer, sentencepiece_model
    from camel_jax.model.config import get_preset
    from camel_jax.params_io import config_to_dict

    tok_bin = os.path.join(REPO, "camel_jax", "assets", "stories260k", "tok512.bin")
    ckpt, out = tmp_path / "ckpt", tmp_path / "out"
    (ckpt / "params").mkdir(parents=True)
    (ckpt / "tokenizer").mkdir()
    (ckpt / "model_config.json").write_text(json.dumps(config_to_dict(get_preset("tiny-gqa"))))  # 256 tokens
    (ckpt / "tokenizer" / "tokenizer.model").write_bytes(sentencepiece_model(read_tokenizer(tok_bin, 512), tok_bin))
    _error_line(_run("train", f"--init_from={ckpt}", f"--output_dir={out}", "--config.data.max_seq_length=128"),
                "--init_from", "the tokenizer has 512 tokens but the model's vocabulary is 256")
    assert not out.exists()


@pytest.mark.parametrize("content, message", [
    ('{"a": 1}\n\n{"a": 2}', None),
    ('{"a": 1}\n{not json\n', "x.jsonl:2: not JSON"),
    ('{"a": 1}\n[1, 2]\n', "x.jsonl:2: expected a JSON object, got list"),
])
def test_json_lines_numbers_lines_and_names_the_bad_one(tmp_path, content, message):
    """The one JSONL reader every command uses: blank lines skipped but counted, .gz read alike, the caller's error
    type naming file:line."""
    import gzip

    from camel_jax.cli import UsageError, json_lines

    class Mine(ValueError):
        pass

    for name, write in (("x.jsonl", lambda p: p.write_text(content)),
                        ("x.jsonl.gz", lambda p: p.write_bytes(gzip.compress(content.encode())))):
        path = tmp_path / name
        write(path)
        if message is None:
            assert list(json_lines(path)) == [(1, {"a": 1}), (3, {"a": 2})]
        else:
            with pytest.raises(Mine, match=message.replace("x.jsonl", name).replace("[", r"\[")):
                list(json_lines(path, Mine))
    with pytest.raises(UsageError, match="nothing.jsonl: no such file"):
        list(json_lines(tmp_path / "nothing.jsonl"))
