"""A small eval data folder in ../shared/data's layout for the evaluate tests: a few real MMLU subjects (building
every item of all 57 costs seconds per setting), and the real GSM8K, BBH, TydiQA, HumanEval and AlpacaEval files;
and the tiny random checkpoint with the LLaMA tokenizer the end-to-end tests run."""
import os
import pathlib

MMLU_SUBJECTS = ("abstract_algebra", "anatomy", "college_computer_science", "college_mathematics",
                 "college_physics", "electrical_engineering")  # the last four hold the 10 "None" option cells


def mini_data_dir(shared_data: pathlib.Path, dest: pathlib.Path, subjects=MMLU_SUBJECTS) -> str:
    for split in ("dev", "test"):
        (dest / "mmlu" / split).mkdir(parents=True, exist_ok=True)
        for s in subjects:
            link = dest / "mmlu" / split / f"{s}_{split}.csv"
            if not link.exists():
                os.symlink(shared_data / "mmlu" / split / f"{s}_{split}.csv", link)
    for bench in ("gsm8k", "bbh", "tydiqa", "humaneval", "alpaca_eval"):
        if not (dest / bench).exists():
            os.symlink(shared_data / bench, dest / bench)
    return str(dest)


def tiny_checkpoint(shared_data: pathlib.Path, dest: pathlib.Path) -> str:
    import jax

    from camel_jax import params_io
    from camel_jax.model.config import get_preset
    from camel_jax.model.llama import init_params

    cfg = get_preset("tiny-gqa", vocab_size=32000, max_seq_len=2048, dtype="float32")
    params = jax.device_get(jax.jit(lambda k: init_params(cfg, k))(jax.random.PRNGKey(0)))
    path = str(dest / "tiny")
    params_io.save_params(path, params, cfg, str(shared_data / "llama_tokenizer"))
    return path


def saved_preds(out, task):
    """A task's saved predictions by id."""
    import json

    from camel_jax.evaluate import records

    with open(os.path.join(out, task, records.PREDICTIONS)) as f:
        return {r["id"]: r for r in map(json.loads, f)}


def read_json(out, *parts):
    import json

    with open(os.path.join(out, *parts)) as f:
        return json.load(f)
