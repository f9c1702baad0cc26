"""SeqIO tasks `tulu_<dataset>` and mixtures `tulu_human_mix` / `tulu_human_gpt_mix`, from mixtures.py's table.

For users of the T5X/SeqIO stack. Each task reads `<data_dir>/<dataset>.jsonl` (data_dir from the argument or
$CAMEL_JAX_DATA_DIR, resolved when a dataset is built, so registering needs no data), and one preprocessor applies
chat_format.encode_messages — the same ids and masks as the native pipeline, because it is the same function —
giving features `targets` (int32 ids, BOS first) and `loss_mask` (int32, 1 on trained tokens); examples with no
trainable token are filtered out. Shifting/packing is left to the consumer (seqio feature converters or
camel_jax.data.packing).

Mixtures: by default rates are the tasks' example counts (counted from the prepared file on first use), which is
SeqIO's form of the paper's concatenation (every example has the same chance; seqio interleaves by sampling rather
than emitting each example exactly once per epoch — use camel_jax.data.pipeline for exact epochs). `by_rate=True`
uses the given weights instead (equal when none are given).

Registration, as SeqIO users expect it from a task module: importing this module registers every task and mixture
when $CAMEL_JAX_DATA_DIR and $CAMEL_JAX_TOKENIZER are set (then tensorflow and seqio are imported with it);
otherwise, or to choose the max length or rates, call `register_tasks(tokenizer_path, data_dir=...)` (the README
shows both). Without those variables importing registers nothing and imports neither tensorflow nor seqio; the
training path never imports this module.
"""
from __future__ import annotations

import functools
import json
import os
from typing import Mapping

from camel_jax.data import mixtures as M

FEATURES = ("targets", "loss_mask")
TOKENIZER_ENV = "CAMEL_JAX_TOKENIZER"  # the tokenizer registration on import uses (also sharegpt splitting's)
DEFAULT_MAX_SEQ_LENGTH = 2048
_PREPARED_PATH: dict = {}  # task name -> callable giving its prepared jsonl path (resolved at use)


@functools.lru_cache(maxsize=8)
def _tokenizer(path: str):
    from camel_jax.model.tokenizer import load_tokenizer

    return load_tokenizer(path)


def _encode_line(line: bytes, tokenizer_path: str, max_seq_length: int, newline_after_eos: bool, where: str):
    import numpy as np

    from camel_jax.data.chat_format import encode_messages

    try:
        messages = json.loads(line.decode("utf-8"))["messages"]
        out = encode_messages(_tokenizer(tokenizer_path), messages, max_seq_length,
                              newline_after_eos=newline_after_eos)
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
        raise ValueError(f"{where}: bad record {line[:80]!r}: {e}") from None
    if out is None:
        return np.zeros(0, np.int32), np.zeros(0, np.int32)
    return out[0].astype(np.int32), out[1].astype(np.int32)


def chat_preprocessor(tokenizer_path: str, max_seq_length: int, newline_after_eos: bool = False, where: str = ""):
    """A seqio preprocessor: {"line": json text} -> {"targets", "loss_mask"}, dropping untrainable examples."""
    import tensorflow as tf

    def encode(line):
        return _encode_line(line, tokenizer_path, max_seq_length, newline_after_eos, where)

    def fn(ds):
        def one(ex):
            ids, mask = tf.numpy_function(encode, [ex["line"]], (tf.int32, tf.int32), stateful=False)
            ids.set_shape([None])
            mask.set_shape([None])
            return {"targets": ids, "loss_mask": mask}

        return ds.map(one, num_parallel_calls=1).filter(lambda ex: tf.size(ex["targets"]) > 0)

    return fn


def _count_lines(path: str) -> int:
    with open(path, "rb") as f:
        return sum(1 for line in f if line.strip())


def register_tasks(tokenizer_path: str | None = None, data_dir: str | None = None,
                   max_seq_length: int = DEFAULT_MAX_SEQ_LENGTH, newline_after_eos: bool = False,
                   by_rate: bool = False, rates: Mapping[str, float] | str | None = None) -> list[str]:
    """(Re-)register the 12 `tulu_<dataset>` tasks and both mixtures; returns the registered names.
    tokenizer_path defaults to $CAMEL_JAX_TOKENIZER, data_dir to $CAMEL_JAX_DATA_DIR (resolved when read)."""
    tokenizer_path = tokenizer_path or os.environ.get(TOKENIZER_ENV, "")
    if not tokenizer_path:
        raise M.MixtureError(f"register_tasks needs a tokenizer: pass tokenizer_path or set ${TOKENIZER_ENV}")
    import seqio
    import tensorflow as tf

    tokenizer_path = os.path.abspath(tokenizer_path)
    vocab = seqio.PassThroughVocabulary(size=_tokenizer(tokenizer_path).vocab_size)
    features = {k: seqio.Feature(vocabulary=vocab, add_eos=False, dtype=tf.int32) for k in FEATURES}
    names = []
    for dataset in M.DATASETS:
        name = M.task_name(dataset)

        def path_of(dataset=dataset) -> str:
            return M.dataset_path(dataset, M.data_dir(data_dir))

        def dataset_fn(split, shuffle_files, seed=None, path_of=path_of):
            if split != "train":
                raise ValueError(f"only the 'train' split exists, got {split!r}")
            path = path_of()
            if not os.path.isfile(path):
                raise FileNotFoundError(f"prepared file {path} is missing (python -m camel_jax.data prepare ...)")
            return tf.data.TextLineDataset(path).filter(lambda s: tf.strings.length(tf.strings.strip(s)) > 0).map(
                lambda s: {"line": s})

        seqio.TaskRegistry.remove(name)
        seqio.TaskRegistry.add(
            name, source=seqio.FunctionDataSource(dataset_fn, splits=["train"]),
            preprocessors=[chat_preprocessor(tokenizer_path, max_seq_length, newline_after_eos, where=name)],
            output_features=features)
        _PREPARED_PATH[name] = path_of
        names.append(name)
    weights = M.parse_rates(rates)
    unknown = sorted(set(weights or ()) - set(M.DATASETS))
    if unknown:
        raise M.MixtureError(f"rates name unknown dataset(s) {unknown}; known: {', '.join(M.DATASETS)}")
    for mix, datasets in M.MIXTURES.items():
        if by_rate:
            parts = [(M.task_name(d), weights.get(d, 0.0) if weights else 1.0) for d in datasets]
            if not sum(r for _, r in parts) > 0:
                raise M.MixtureError(f"rates {weights} give every dataset of {mix} ({', '.join(datasets)}) weight 0")
        else:
            parts = [(M.task_name(d), _example_count_rate) for d in datasets]
        seqio.MixtureRegistry.remove(mix)
        seqio.MixtureRegistry.add(mix, parts)
        names.append(mix)
    return names


def _example_count_rate(task) -> float:
    """Rate ∝ prepared examples (the paper's concatenation), counted lazily from the jsonl file."""
    return float(_count_lines(_PREPARED_PATH[task.name]()))


if os.environ.get(M.DATA_DIR_ENV) and os.environ.get(TOKENIZER_ENV):  # registration on import, as SeqIO task
    register_tasks()  # modules do; data_dir stays $CAMEL_JAX_DATA_DIR, read when a dataset is built
