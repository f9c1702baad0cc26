"""An evaluation folder's predictions file: a torn last line is cut, a record of another prompt or item refused."""
import json

import pytest

from camel_jax.cli import UsageError


def test_a_predictions_file_of_other_prompts_is_refused(tmp_path):
    from camel_jax.evaluate import records
    from camel_jax.evaluate.task import Item

    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"id": "x/0", "prompt": "old"}) + "\n" + '{"id": "x/1", "pro')
    items = {"x/0": Item("x/0", "old", "A"), "x/1": Item("x/1", "new", "A")}
    assert list(records.read_predictions(str(path), items)) == ["x/0"]
    assert path.read_text().endswith("}\n")  # the torn line is gone
    with pytest.raises(UsageError, match=r"p.jsonl:1: the prompt of 'x/0' differs"):
        records.read_predictions(str(path), {"x/0": Item("x/0", "other", "A")})
    with pytest.raises(UsageError, match=r"p.jsonl:1: id 'x/0' is not an item"):
        records.read_predictions(str(path), {})
