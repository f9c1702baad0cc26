"""open-instruct's annotation records: round trips through JSONL and CSV, flips, and errors naming file and line."""
import pytest

from camel_jax.cli import UsageError
from camel_jax.human_eval.records import Annotation, read_annotations, write_annotations

A = Annotation("vicuna_1", "tulu_65B", "chatgpt", "a </pre><script>x</script>", "b,\n\"quoted\"", "yes", "no",
               "a-is-slightly-better", "se", "2023-05-18 19:57:00", prompt="p")


@pytest.mark.parametrize("ext", ["jsonl", "csv"])
def test_round_trip(tmp_path, ext):
    path = str(tmp_path / f"a.{ext}")
    write_annotations(path, [A, A.flipped()])
    assert read_annotations(path) == [A, A.flipped()]


def test_flip_is_an_involution_and_mirrors_the_preference():
    f = A.flipped()
    assert (f.model_a, f.preference, f.completion_a_is_acceptable) == ("chatgpt", "b-is-slightly-better", "no")
    assert f.flipped() == A and f.pair == A.pair == ("chatgpt", "tulu_65B")


def test_bad_lines_name_file_line_and_field(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text('{"instance_id": "x"}\n')
    with pytest.raises(UsageError, match=r"a\.jsonl:1: missing field 'model_a'"):
        read_annotations(str(path))
    write_annotations(str(path), [A])
    path.write_text(path.read_text() + path.read_text().replace("a-is-slightly-better", "a-wins"))
    with pytest.raises(UsageError, match=r"a\.jsonl:2: field 'preference' is 'a-wins'"):
        read_annotations(str(path))
    path.write_text("{not json\n")
    with pytest.raises(UsageError, match=r"a\.jsonl:1: not JSON"):
        read_annotations(str(path))
    csv = tmp_path / "a.csv"
    csv.write_text("instance_id,model_a\nx,y\n")
    with pytest.raises(UsageError, match=r"a\.csv:1: the CSV header lacks the column 'model_b'"):
        read_annotations(str(csv))
    with pytest.raises(UsageError, match=r"expected a \.jsonl or \.csv"):
        read_annotations(str(tmp_path / "a.xlsx"))
