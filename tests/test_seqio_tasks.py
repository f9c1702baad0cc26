"""The registered SeqIO tasks give exactly chat_format's ids and masks (TensorFlow part kept small)."""
import json

import pytest

from camel_jax.data import mixtures as M
from camel_jax.data.chat_format import encode_messages
from camel_jax.model.tokenizer import load_tokenizer

MAX_LEN = 48


def _conv(i, n_words, answer=True):
    msgs = [{"role": "user", "content": f"Question {i}: " + " ".join(["word"] * n_words)}]
    return msgs + ([{"role": "assistant", "content": f"Answer number {i}."}] if answer else [])


@pytest.fixture(scope="module")
def registered(shared_data, tmp_path_factory):
    seqio = pytest.importorskip("seqio")
    from camel_jax.data import seqio_tasks

    d = tmp_path_factory.mktemp("prepared")
    convs = {}
    for k, ds in enumerate(M.HUMAN_MIX):
        # 2..5 examples per dataset; one too long to keep a trainable token, one without an answer (both dropped)
        rows = [_conv(10 * k + j, 3 + j) for j in range(k + 2)] + [_conv(99, 60), _conv(98, 2, answer=False)]
        convs[ds] = rows
        (d / f"{ds}.jsonl").write_text("".join(json.dumps({"dataset": ds, "id": f"{ds}_{j}", "messages": m}) + "\n"
                                               for j, m in enumerate(rows)) + "\n")
    tok_path = str(shared_data / "llama_tokenizer")
    names = seqio_tasks.register_tasks(tok_path, data_dir=str(d), max_seq_length=MAX_LEN)
    return seqio, seqio_tasks, load_tokenizer(tok_path), convs, names, str(d)


def _expected(tok, rows):
    out = [encode_messages(tok, m, MAX_LEN) for m in rows]
    return [(ids.tolist(), mask.tolist()) for ids, mask in (o for o in out if o is not None)]


def _examples(ds, n=None):
    got = []
    for ex in ds.as_numpy_iterator():
        got.append((ex["targets"].tolist(), ex["loss_mask"].tolist()))
        if n is not None and len(got) >= n:
            break
    return got


def test_task_matches_chat_format(registered):
    seqio, _, tok, convs, names, _ = registered
    assert set(names) == {M.task_name(d) for d in M.DATASETS} | set(M.MIXTURES)
    task = seqio.get_mixture_or_task("tulu_dolly")
    ds = task.get_dataset(sequence_length=None, split="train", shuffle=False)
    got = _examples(ds)
    want = _expected(tok, convs["dolly"])
    assert len(want) == len(convs["dolly"]) - 2
    assert got == want


def test_mixture_rates_and_members(registered):
    seqio, seqio_tasks, tok, convs, _, d = registered
    mix = seqio.get_mixture_or_task("tulu_human_mix")
    rates = {t.name: mix.get_rate(t) for t in mix.tasks}
    assert rates == {M.task_name(ds): float(len(convs[ds])) for ds in M.HUMAN_MIX}  # ∝ examples: concatenation
    allowed = {tuple(map(tuple, e)) for ds in M.HUMAN_MIX for e in _expected(tok, convs[ds])}
    got = _examples(mix.get_dataset(sequence_length=None, split="train", shuffle=False, seed=0), n=12)
    assert len(got) == 12 and all(tuple(map(tuple, g)) in allowed for g in got)
    seqio_tasks.register_tasks(str(tok.path), data_dir=d, max_seq_length=MAX_LEN, by_rate=True,
                               rates={"dolly": 3, "cot": 1})
    mix = seqio.get_mixture_or_task("tulu_human_mix")
    assert {t.name: mix.get_rate(t) for t in mix.tasks} == {"tulu_flan_v2": 0.0, "tulu_cot": 1.0,
                                                             "tulu_dolly": 3.0, "tulu_oasst1": 0.0}
    with pytest.raises(M.MixtureError, match="weight 0"):
        seqio_tasks.register_tasks(str(tok.path), data_dir=d, by_rate=True, rates={"sharegpt": 1})
    with pytest.raises(M.MixtureError, match=r"unknown dataset\(s\) \['alpaca'\]"):
        seqio_tasks.register_tasks(str(tok.path), data_dir=d, by_rate=True, rates={"alpaca": 1})


def _python(code, **env):
    import os
    import subprocess
    import sys

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **env)
    for k in ("CAMEL_JAX_DATA_DIR", "CAMEL_JAX_TOKENIZER"):
        if k not in env or not env[k]:
            env.pop(k, None)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)


def test_import_registers_from_the_configured_data_dir(registered):
    """As with any SeqIO task module: set the data dir and tokenizer, import, read (no register_tasks call)."""
    _, _, tok, convs, _, d = registered
    code = ("import seqio, camel_jax.data.seqio_tasks\n"
            "ds = seqio.get_mixture_or_task('tulu_dolly').get_dataset(sequence_length=None, split='train', "
            "shuffle=False)\n"
            "print(sum(1 for _ in ds.as_numpy_iterator()))")
    p = _python(code, CAMEL_JAX_DATA_DIR=d, CAMEL_JAX_TOKENIZER=str(tok.path))
    assert p.returncode == 0, p.stderr[-3000:]
    kept = [m for m in convs["dolly"] if encode_messages(tok, m, 2048) is not None]  # the default max length
    assert int(p.stdout.split()[-1]) == len(kept) == len(convs["dolly"]) - 1


def test_import_without_configuration_registers_nothing_and_keeps_tensorflow_out():
    code = ("import sys, camel_jax.data.seqio_tasks\n"
            "print(sorted(m for m in ('tensorflow', 'seqio') if m in sys.modules))")
    p = _python(code, CAMEL_JAX_DATA_DIR="", CAMEL_JAX_TOKENIZER="")
    assert p.returncode == 0 and p.stdout.strip() == "[]", p.stderr[-3000:]
