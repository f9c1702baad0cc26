"""MMLU: prompts byte for byte as open_instruct.md §4.1 writes them (both protocols, chat on and off), the pandas
"nan" of protocol paper, the length fallback (paper before wrapping, fixed after, against brute-force counting),
open-instruct's candidate ids, and the micro-averaged metrics with Hendrycks' categories."""
import pytest

from camel_jax.evaluate import mmlu
from camel_jax.evaluate.task import BuildContext, tulu_wrap

Q0 = "Find the degree for the given field extension Q(sqrt(2), sqrt(3), sqrt(18)) over Q."
HEADER = "The following are multiple choice questions (with answers) about  abstract algebra.\n\n"
TEST0 = Q0 + "\nA. 0\nB. 4\nC. 2\nD. 6\nAnswer:"
SHOTS = (
    "Find all c in Z_3 such that Z_3[x]/(x^2 + c) is a field.\nA. 0\nB. 1\nC. 2\nD. 3\nAnswer: B\n\n"
    "Statement 1 | If aH is an element of a factor group, then |aH| divides |a|. Statement 2 | If H and K are "
    "subgroups of G then HK is a subgroup of G.\nA. True, True\nB. False, False\nC. True, False\nD. False, True\n"
    "Answer: B\n\n"
    "Statement 1 | Every element of a group generates a cyclic subgroup of the group. Statement 2 | The symmetric "
    "group S_10 has 10 elements.\nA. True, True\nB. False, False\nC. True, False\nD. False, True\nAnswer: C\n\n"
    "Statement 1| Every function from a finite set onto itself must be one to one. Statement 2 | Every subgroup of "
    "an abelian group is abelian.\nA. True, True\nB. False, False\nC. True, False\nD. False, True\nAnswer: A\n\n"
    "Find the characteristic of the ring 2Z.\nA. 0\nB. 3\nC. 12\nD. 30\nAnswer: A\n\n")


@pytest.fixture(scope="module")
def mini(shared_data, tmp_path_factory):
    from eval_util import mini_data_dir

    return mini_data_dir(shared_data, tmp_path_factory.mktemp("mmlu_data"))


@pytest.fixture(scope="module")
def tok(shared_data):
    from camel_jax.model.tokenizer import load_tokenizer

    return load_tokenizer(str(shared_data / "llama_tokenizer"))


def _ctx(data, tok, protocol="fixed", chat=True, max_len=2048):
    render = (lambda u, p, plain: tulu_wrap(u, p)) if chat else (lambda u, p, plain: plain)
    return BuildContext(str(data), protocol, tok, render, chat, max_len)


@pytest.mark.parametrize("protocol", ["paper", "fixed"])
def test_first_item_byte_exact(mini, tok, protocol):
    for chat in (False, True):
        ctx = _ctx(mini, tok, protocol, chat)
        zero, five = (s.items(ctx)[0] for s in mmlu.SETTINGS)
        assert zero.id == five.id == "abstract_algebra/0" and zero.gold == "B"
        if chat:
            assert zero.prompt == "<|user|>\n" + HEADER.strip() + "\n\n" + TEST0 + "\n<|assistant|>\nThe answer is:"
            assert five.prompt == "<|user|>\n" + HEADER + SHOTS + TEST0 + "\n<|assistant|>\nThe answer is:"
        else:
            assert zero.prompt == HEADER + TEST0
            assert five.prompt == HEADER + SHOTS + TEST0
        assert five.meta == {"subject": "abstract_algebra", "subcategory": "math", "category": "STEM", "shots": 5,
                             "shots_asked": 5}


def test_paper_reads_none_as_nan_like_pandas(mini, tok):
    by_proto = {p: {it.id: it for it in mmlu.SETTINGS[0].items(_ctx(mini, tok, p, chat=False))}
                for p in ("paper", "fixed")}
    assert "\nA. nan\n" in by_proto["paper"]["college_mathematics/8"].prompt
    assert "\nA. None\n" in by_proto["fixed"]["college_mathematics/8"].prompt
    differ = [i for i in by_proto["paper"] if by_proto["paper"][i].prompt != by_proto["fixed"][i].prompt]
    assert len(differ) == 10  # the 10 "None" option cells of the test set


def _brute_shots(ctx, dev, subject, row, shots):
    """The fallback the slow way: tokenize the whole prompt for every k (open-instruct's loop)."""
    k = shots
    while True:
        plain = mmlu.few_shot_prefix(dev, subject, k) + mmlu.format_example(row, False)
        prompt = ctx.render(plain, mmlu.ANSWER_PREFIX, plain)
        n = len(ctx.tokenizer.encode(plain)) if ctx.protocol == "paper" else len(ctx.tokenizer.encode(prompt)) + 1
        if k == 0 or n <= ctx.max_len:
            return k
        k -= 1


def test_length_fallback_paper_before_wrapping_fixed_after(shared_data, tok):
    subject = "high_school_european_history"  # long passages: many prompts lose shots at 2048 tokens
    dev = mmlu.read_rows(str(shared_data / "mmlu/dev" / f"{subject}_dev.csv"), "fixed")
    rows = mmlu.read_rows(str(shared_data / "mmlu/test" / f"{subject}_test.csv"), "fixed")
    test = [rows[i] for i in (0, 1, 2, 3, 45, 49, 84)]  # 45, 49, 84: the 2048-token check's order decides
    kept = {}
    for protocol in ("paper", "fixed"):
        ctx = _ctx(shared_data, tok, protocol)
        got = [mmlu.build_prompt(ctx, dev, subject, row, 5) for row in test]
        assert [k for _, k in got] == [_brute_shots(ctx, dev, subject, row, 5) for row in test]
        kept[protocol] = [k for _, k in got]
        for (prompt, k), row in zip(got, test):
            assert prompt == tulu_wrap(mmlu.few_shot_prefix(dev, subject, k) + mmlu.format_example(row, False),
                                       "The answer is:")
    assert min(kept["fixed"]) < 5  # the fallback fires on this subject
    assert all(f <= p for f, p in zip(kept["fixed"], kept["paper"]))  # wrapping and BOS only add tokens
    assert kept["fixed"][4:] == [p - 1 for p in kept["paper"][4:]]  # the check's order costs a shot


def test_fallback_stops_at_zero_shots(shared_data, tok):
    ctx = _ctx(shared_data, tok, max_len=16)
    prompt, k = mmlu.build_prompt(ctx, [["q", "a", "b", "c", "d", "A"]] * 5, "anatomy", ["x" * 100] + list("abcdA"), 5)
    assert k == 0 and prompt.endswith("\nAnswer:\n<|assistant|>\nThe answer is:")


def test_candidate_ids_are_bare_letters(tok):
    # open-instruct: encode(letter)[0] without a leading space; on LLaMA that is "▁A" = 319 (open_instruct.md §4.0)
    assert [tok.encode(c)[0] for c in mmlu.CHOICES] == [319, 350, 315, 360]


def test_subject_table_is_hendrycks(shared_data):
    assert mmlu.subjects(str(shared_data)) == sorted(mmlu.SUBCATEGORIES) and len(mmlu.SUBCATEGORIES) == 57
    counts = {}
    for sub in mmlu.SUBCATEGORIES.values():
        counts[mmlu.CATEGORY_OF[sub]] = counts.get(mmlu.CATEGORY_OF[sub], 0) + 1
    assert counts == {"STEM": 18, "humanities": 13, "social sciences": 12, "other (business, health, misc.)": 14}


def test_score_micro_average_with_categories():
    def rec(subject, sub, cat, answer, gold, shots=5):
        return {"answer": answer, "gold": gold,
                "meta": {"subject": subject, "subcategory": sub, "category": cat, "shots": shots, "shots_asked": 5}}

    records = [rec("anatomy", "health", "other (business, health, misc.)", "A", "A"),
               rec("anatomy", "health", "other (business, health, misc.)", "B", "A", shots=3),
               rec("virology", "health", "other (business, health, misc.)", "C", "C"),
               rec("astronomy", "physics", "STEM", "D", "C")]
    m = mmlu.score(records)
    assert m["accuracy"] == 50.0 and m["num_questions"] == 4 and m["length_fallbacks"] == 1
    assert m["subject_accuracy"] == {"anatomy": 50.0, "astronomy": 0.0, "virology": 100.0}  # micro, not macro:
    assert m["subcategory_accuracy"] == {"health": pytest.approx(200 / 3), "physics": 0.0}  # 2 of 3 health
    assert m["category_accuracy"] == {"STEM": 0.0, "other (business, health, misc.)": pytest.approx(200 / 3)}
