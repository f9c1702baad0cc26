"""The benchmark settings as SeqIO tasks `camel_eval_<task>` (e.g. camel_eval_gsm_cot), for users of T5X/SeqIO.

`register_tasks(tokenizer_path, data_dir, protocol, chat_format)` registers one task per setting of the registry:
* source: a FunctionDataSource over the setting's items (split "test"; built on first use, so registering needs
  neither data nor tensorflow work), examples {"id", "prompt", "gold", "meta"} (gold and meta as JSON text);
* preprocessors: tokenization of the exact prompt as one string (BOS per protocol: the ids the driver feeds the
  model), into "inputs"; for choice settings then SeqIO's rank classification (t5.data.preprocessors'
  `rank_classification`, mode "eval": one example per choice with "targets" = the choice's token, "idx" =
  [example, choice], "is_correct"), t5 not being a dependency of camel_jax;
* output features "inputs"/"targets" with a PassThroughVocabulary (ids are the model's own);
* postprocess_fn: a target becomes {"id", "gold", "meta"}; a generate prediction (ids) becomes text, cut at the
  setting's stop strings;
* metric_fns: the setting's own `score` on records made from targets and predictions (generate) or from rank
  scores (choice: the argmax choice per example), so a SeqIO evaluation reports the numbers the driver does.

The examples come in the order the driver selects with --max_examples (MMLU round-robin over subjects), so a
`seqio.Evaluator(..., num_examples=N)` (choice tasks: N x 4 rows) evaluates the driver's N items.

`model_fns(params, cfg, tokenizer, setting, protocol)` gives `seqio.Evaluator.evaluate` its predict_fn (the engine,
the setting's decoding, stops as the protocol uses them) and score_fn (the scorer's log-likelihood of each rank
classification row), and `evaluator(task)` the Evaluator itself (a pass-through feature converter: the features
are already the model's ids); tests/test_eval_run.py checks that this path reports the driver's metrics. The
driver (run.py) does not go through `seqio.Evaluator`; its docstring says why (resume, n samples, per-record
protocol facts). Importing this module imports neither tensorflow nor seqio.
"""
from __future__ import annotations

import functools
import json
from typing import Sequence

PREFIX = "camel_eval_"


@functools.lru_cache(maxsize=4)
def _tokenizer(path: str):
    from camel_jax.model.tokenizer import load_tokenizer

    return load_tokenizer(path)


def _context(setting, tokenizer_path: str, data_dir: str, protocol: str, chat_format: str, max_len: int):
    from camel_jax.evaluate import run
    from camel_jax.evaluate.task import BuildContext

    tok = _tokenizer(tokenizer_path)
    chat = setting.chat and chat_format != "none"
    return BuildContext(data_dir, protocol, tok, run.make_render(chat_format, tok, chat), chat, max_len)


def rank_classification(ds, choice_ids: Sequence[int], gold_index):
    """t5's rank_classification in "eval" mode for single-token choices: one example per choice."""
    import tensorflow as tf

    choices = tf.constant([[c] for c in choice_ids], tf.int32)
    n = len(choice_ids)

    def expand(i, ex):
        gold = gold_index(ex)
        return tf.data.Dataset.from_tensor_slices({
            "idx": tf.stack([tf.fill([n], tf.cast(i, tf.int32)), tf.range(n, dtype=tf.int32)], axis=1),
            "inputs": tf.repeat(ex["inputs"][None], n, axis=0), "targets": choices,
            "is_correct": tf.equal(tf.range(n, dtype=tf.int32), gold), "id": tf.fill([n], ex["id"]),
            "gold": tf.fill([n], ex["gold"]), "meta": tf.fill([n], ex["meta"])})

    return ds.enumerate().flat_map(expand)


def _records_from_ranks(setting, targets, scores):
    """Choice metric: targets (idx, is_correct, target dict) per row and one log-likelihood score per row."""
    best: dict[int, tuple[float, int, dict]] = {}
    for (idx, _, target), score in zip(targets, scores):
        example, choice = int(idx[0]), int(idx[1])
        if example not in best or score > best[example][0]:
            best[example] = (score, choice, target)
    return [{**t, "answer": setting.choices[c]} for _, (_, c, t) in sorted(best.items())]


def register_tasks(tokenizer_path: str, data_dir: str | None = None, protocol: str = "fixed",
                   chat_format: str = "tulu", max_len: int = 2048, names: Sequence[str] | None = None) -> list[str]:
    """(Re-)register `camel_eval_<task>` for every registered setting (or `names`); returns the task names."""
    import numpy as np
    import seqio
    import tensorflow as tf

    from camel_jax.evaluate import registry, run
    from camel_jax.evaluate.task import Item, add_bos, encode_prompt

    data_dir = data_dir or run.default_data_dir()
    tok = _tokenizer(tokenizer_path)
    has_bos = tok.bos_id is not None and tok.bos_id >= 0
    vocab = seqio.PassThroughVocabulary(size=tok.vocab_size)
    features = {k: seqio.Feature(vocabulary=vocab, add_eos=False, dtype=tf.int32) for k in ("inputs", "targets")}
    out = []
    for name in names or list(registry.SETTINGS):
        s = registry.SETTINGS[name]
        items = functools.lru_cache(maxsize=1)(
            lambda s=s: list(s.items(_context(s, tokenizer_path, data_dir, protocol, chat_format, max_len))))

        def dataset_fn(split, shuffle_files, seed=None, items=items, s=s):
            if split != "test":
                raise ValueError(f"only the 'test' split exists, got {split!r}")
            rows = run.subset(items(), None, s.subset_key)  # the driver's --max_examples order
            return tf.data.Dataset.from_tensor_slices({
                "id": [it.id for it in rows], "prompt": [it.prompt for it in rows],
                "gold": [json.dumps(it.gold) for it in rows], "meta": [json.dumps(dict(it.meta)) for it in rows]})

        def tokenize(ds, bos=has_bos and add_bos(s, protocol)):
            def encode(text):  # the driver's ids: BOS per protocol and setting, paper's "<s>" as BOS
                return np.asarray(encode_prompt(tok, text.decode("utf-8"), bos, protocol == "paper"), np.int32)

            def one(ex):
                ids = tf.numpy_function(encode, [ex["prompt"]], tf.int32, stateful=False)
                ids.set_shape([None])
                return {**ex, "inputs": ids, "targets": tf.zeros([0], tf.int32)}

            return ds.map(one)

        preprocessors = [tokenize]
        if s.kind == "choice":
            choice_ids = [tok.encode(c)[0] for c in s.choices]
            golds = tf.constant([json.dumps(c) for c in s.choices])

            def gold_index(ex, golds=golds):
                return tf.cast(tf.argmax(tf.cast(tf.equal(golds, ex["gold"]), tf.int32)), tf.int32)

            preprocessors.append(functools.partial(rank_classification, choice_ids=choice_ids,
                                                   gold_index=gold_index))

        def postprocess(output, example=None, is_target=False, s=s):
            if is_target:
                target = {"id": _text(example["id"]), "gold": json.loads(_text(example["gold"])),
                          "meta": json.loads(_text(example["meta"]))}
                return (example["idx"], example["is_correct"], target) if s.kind == "choice" else target
            return run.truncate(tok.decode(list(output)), s.decoding.stop) if s.kind == "generate" else output

        def metric(targets, predictions_or_scores, s=s):
            if s.kind == "choice":
                recs = _records_from_ranks(s, targets, predictions_or_scores)
            else:
                recs = [{**t, "output": p, "answer": s.extract(p, Item(t["id"], "", t["gold"], t["meta"]))}
                        for t, p in zip(targets, predictions_or_scores)]
            return {k: v for k, v in s.score(recs).items() if isinstance(v, (int, float))}

        if s.kind == "choice":  # seqio tells score metrics from prediction metrics by the argument's name
            def score_metric(targets, scores, metric=metric):
                return metric(targets, scores)
            fns = [score_metric]
        else:
            def predict_metric(targets, predictions, metric=metric):
                return metric(targets, predictions)
            fns = [predict_metric]
        task = PREFIX + name
        seqio.TaskRegistry.remove(task)
        seqio.TaskRegistry.add(task, source=seqio.FunctionDataSource(dataset_fn, splits=["test"]),
                               preprocessors=preprocessors, output_features=features, postprocess_fn=postprocess,
                               metric_fns=fns)
        out.append(task)
    return out


def model_fns(params, cfg, tokenizer, setting, protocol: str, slots: int = 4, max_new_tokens: int | None = None):
    """(predict_fn, score_fn) for `seqio.Evaluator.evaluate` over a `camel_eval_<task>` dataset, on the engine and
    the scorer as the driver runs them (max_new_tokens: the driver's --max_new_tokens cap)."""
    from camel_jax.infer.engine import Engine, Request
    from camel_jax.infer.scoring import Scorer

    def rows(ds):
        return [(int(i), ex) for i, ex in ds.as_numpy_iterator()]

    def predict_fn(ds):
        d, got = setting.decoding, rows(ds)
        budget = min(d.max_new_tokens, max_new_tokens or d.max_new_tokens)
        reqs = [Request(ex["inputs"].tolist(), min(budget, cfg.max_seq_len - len(ex["inputs"])), d.temperature, 0,
                        d.top_p, n=1, seed=d.seed, stop=tuple(d.stop) if protocol == "fixed" else ())
                for _, ex in got]
        longest = max(len(r.prompt) + r.max_new_tokens for r in reqs)
        engine = Engine(params, cfg, slots=slots, max_len=min(cfg.max_seq_len, -(-longest // 128) * 128),
                        tokenizer=tokenizer)
        return [(i, out[0].tokens) for (i, _), out in zip(got, engine.run(reqs))]

    def score_fn(ds):
        got = rows(ds)
        scored = Scorer(params, cfg, batch_size=slots).loglikelihood(
            [(ex["inputs"].tolist(), ex["targets"].tolist()) for _, ex in got])
        return [(i, r.logprob) for (i, _), r in zip(got, scored)]

    return predict_fn, score_fn


def evaluator(task: str, num_examples: int | None = None):
    """A seqio.Evaluator over the registered task's test split (features passed through as they are)."""
    import seqio

    import tensorflow as tf

    class PassThrough(seqio.PassThroughFeatureConverter):
        """What the Evaluator asks of a converter, which the pass-through one never sets."""
        pack = False
        TASK_FEATURES = {k: seqio.FeatureConverter.FeatureSpec(dtype=tf.int32) for k in ("inputs", "targets")}

    return seqio.Evaluator(task, PassThrough(), eval_split="test", num_examples=num_examples, shuffle=False,
                           async_compute_metrics=False)


def _text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)
