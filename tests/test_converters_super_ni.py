"""super_ni: 60 zero-shot + 20 two-shot per task, _mmmlu_ skipped, split file order, reference-equal draws."""
import json
import random
import shutil

import pytest

from camel_jax.data import templates as T
from camel_jax.data.prepare import convert_dataset
from camel_jax.data.records import RecordError
from conftest import TEST_DATA

RAW = TEST_DATA / "raw" / "super_ni"


def _reference(raw, seed, zs=60, fs=20, n_shot=2):
    """open-instruct's convert_super_ni_data run alone (global random), minus its crash on missing task files."""
    random.seed(seed)
    out = []
    for task in (raw / "splits" / "default" / "train_tasks.txt").read_text().split("\n"):
        if "_mmmlu_" in task or not (raw / "tasks" / f"{task.strip()}.json").exists():
            continue
        d = json.loads((raw / "tasks" / f"{task.strip()}.json").read_text())
        inst = random.sample(d["Instances"], k=zs + fs) if zs + fs < len(d["Instances"]) else d["Instances"]
        for i in inst[:zs]:
            ex = T.encode_instruction_example(d["Definition"][0], i["input"], i["output"][0], rng=random)
            out.append((f"super_ni_{i['id']}", ex["prompt"], ex["completion"]))
        for i in inst[zs:]:
            pos = d["Positive Examples"]
            shots = random.sample(pos, k=n_shot) if n_shot < len(pos) else pos
            ex = T.encode_few_shot_example(d["Definition"][0], shots, i["input"], i["output"][0])
            out.append((f"super_ni_{i['id']}", ex["prompt"], ex["completion"]))
    return out


def _flat(examples):
    return [(e["id"], e["messages"][0]["content"], e["messages"][1]["content"]) for e in examples]


def test_counts_skips_and_reference_equality():
    got, t = convert_dataset("super_ni", str(RAW), seed=42)
    assert _flat(got) == _reference(RAW, 42)
    assert len(got) == 80 + 12 and t.read == 119 + 12 and t.converted == 92 and t.dropped["not_sampled"] == 39
    assert dict(t.files) == {"task_skipped_mmmlu": 1, "task_file_missing": 1, "task_converted": 2}
    assert "split file splits/default/train_tasks.txt" in t.notes
    edible = [g for g in got if "edible" in g["messages"][0]["content"]]
    few = [g for g in edible if g["messages"][0]["content"].endswith("\nOutput:\n")]
    assert len(edible) == 80 and len(few) >= 20
    for g in edible[60:]:  # the 20 few-shot ones: definition, both positives, then the query
        p = g["messages"][0]["content"]
        assert p.startswith("In this task, you are given an item") and p.count("Input:\n") == 3
        assert "Input:\nGlass\nOutput:\n2\n\n" in p


def test_few_shot_exemplars_sampled_when_more_than_two():
    got, _ = convert_dataset("super_ni", str(RAW), seed=5, zero_shot=6, few_shot=4)
    assert _flat(got) == _reference(RAW, 5, zs=6, fs=4)
    assert len(got) == 20  # 6 + 4 per task
    copa_few = [g["messages"][0]["content"] for g in got[16:]]
    assert all(p.count("Input:\n") == 3 and p.endswith("Output:\n") for p in copa_few)


def test_ids_and_seed_determinism():
    a, _ = convert_dataset("super_ni", str(RAW), seed=1)
    b, _ = convert_dataset("super_ni", str(RAW), seed=1)
    c, _ = convert_dataset("super_ni", str(RAW), seed=2)
    assert a == b and a != c
    assert len({g["id"] for g in a}) == len(a)


def test_bad_instance_and_bad_task(tmp_path):
    raw = tmp_path / "ni"
    shutil.copytree(RAW, raw)
    p = raw / "tasks" / "task1393_superglue_copa_text_completion.json"
    d = json.loads(p.read_text())
    d["Instances"][3]["output"] = []
    del d["Instances"][5]["input"]
    p.write_text(json.dumps(d))
    with pytest.raises(RecordError, match=r"task1393_superglue_copa_text_completion\.json: Instances\[3\]: "
                                          r"missing_field"):
        convert_dataset("super_ni", str(raw))
    got, t = convert_dataset("super_ni", str(raw), skip_bad_records=True)
    assert dict(t.bad) == {"missing_field": 2} and len(got) == 80 + 10
    d.pop("Definition")
    p.write_text(json.dumps(d))
    with pytest.raises(RecordError, match=r"copa_text_completion\.json: missing_field: no field 'Definition'"):
        convert_dataset("super_ni", str(raw))
    _, t = convert_dataset("super_ni", str(raw), skip_bad_records=True)
    assert t.files["task_file_bad"] == 1
    with pytest.raises(RecordError, match="split file not found"):
        convert_dataset("super_ni", str(tmp_path))


def test_real_sample(shared_data):
    raw = shared_data / "super_natural_instructions"
    got, t = convert_dataset("super_ni", str(raw), seed=42)
    # of the six task files only task1149 is an (English default-split) training task
    assert len(got) == 80 and t.files["task_converted"] == 1 and t.files["task_skipped_mmmlu"] == 57
    assert t.files["task_file_missing"] == 756 - 57 - 1
    assert sum(g["messages"][0]["content"].endswith("Output:\n") and "Input:\nGlass" in g["messages"][0]["content"]
               for g in got) == 20
    again, _ = convert_dataset("super_ni", str(raw), seed=42)
    assert again == got
