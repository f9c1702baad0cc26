"""The benchmarks as SeqIO tasks: the same prompt ids as the driver, rank classification rows for MMLU, and
metric_fns giving the module's own score on targets and predictions or rank scores."""
import numpy as np
import pytest

from camel_jax.evaluate import gsm, mmlu


@pytest.fixture(scope="module")
def tasks(shared_data, tmp_path_factory):
    seqio = pytest.importorskip("seqio")
    from eval_util import mini_data_dir
    from camel_jax.evaluate import seqio_tasks

    data = mini_data_dir(shared_data, tmp_path_factory.mktemp("seqio_data"), ("abstract_algebra", "anatomy"))
    tok_dir = str(shared_data / "llama_tokenizer")
    names = seqio_tasks.register_tasks(tok_dir, data, "fixed", "tulu", names=["mmlu_0shot", "gsm_cot"])
    assert names == ["camel_eval_mmlu_0shot", "camel_eval_gsm_cot"]
    return seqio, data, tok_dir


def _examples(seqio, name, n):
    task = seqio.get_mixture_or_task(name)
    ds = task.get_dataset(sequence_length=None, split="test", shuffle=False)
    return task, [ex for ex, _ in zip(ds.as_numpy_iterator(), range(n))]


def _driver_items(setting, data, tok_dir):
    """The items in the driver's --max_examples order."""
    from camel_jax.evaluate import run, seqio_tasks

    items = setting.items(seqio_tasks._context(setting, tok_dir, data, "fixed", "tulu", 2048))
    return run.subset(items, None, setting.subset_key)


def test_generate_task_ids_postprocess_and_metric(tasks):
    seqio, data, tok_dir = tasks
    from camel_jax.model.tokenizer import load_tokenizer

    tok = load_tokenizer(tok_dir)
    task, exs = _examples(seqio, "camel_eval_gsm_cot", 2)
    items = _driver_items(gsm.SETTINGS[1], data, tok_dir)[:2]
    assert [ex["inputs"].tolist() for ex in exs] == [tok.encode(it.prompt, add_bos=True) for it in items]
    targets = [task.postprocess_fn(None, example=ex, is_target=True) for ex in exs]
    assert [t["id"] for t in targets] == [it.id for it in items] and targets[0]["gold"] == "2280"
    outputs = [tok.encode(" So the answer is 2,280.\nQuestion: more"), tok.encode(" 7")]
    preds = [task.postprocess_fn(np.asarray(o), example=ex, is_target=False) for o, ex in zip(outputs, exs)]
    assert preds == [" So the answer is 2,280.", " 7"]  # cut at the stop
    (fn,) = task.predict_metric_fns
    assert fn(targets, preds) == {"exact_match": 50.0, "num_questions": 2}


def test_choice_task_is_rank_classification(tasks):
    seqio, data, tok_dir = tasks
    task, rows = _examples(seqio, "camel_eval_mmlu_0shot", 8)
    items = _driver_items(mmlu.SETTINGS[0], data, tok_dir)[:2]
    assert [r["targets"].tolist() for r in rows[:4]] == [[319], [350], [315], [360]]
    assert [r["idx"].tolist() for r in rows[:5]] == [[0, 0], [0, 1], [0, 2], [0, 3], [1, 0]]
    assert [bool(r["is_correct"]) for r in rows[:4]] == [c == items[0].gold for c in "ABCD"]
    assert len({r["inputs"].tobytes() for r in rows[:4]}) == 1
    targets = [task.postprocess_fn(None, example=r, is_target=True) for r in rows]
    scores = [-1.0, -0.5, -2.0, -3.0,  # example 0 -> B (its gold)
              -0.1, -0.5, -2.0, -3.0]  # example 1 -> A
    (fn,) = task.score_metric_fns
    want = mmlu.score([{"answer": a, "gold": it.gold, "meta": dict(it.meta)} for a, it in zip("BA", items)])
    assert fn(targets, scores) == {k: v for k, v in want.items() if isinstance(v, (int, float))}
