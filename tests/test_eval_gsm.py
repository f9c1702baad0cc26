"""GSM: the paper's 200-question sample (random.seed(42) over the test file), prompts byte for byte as
open_instruct.md §4.2 writes them (the "Quesion" typo only under protocol paper, chat on and off), the last-number
extraction and HF evaluate's exact_match normalisation on hand-made outputs."""
import json
import random

import pytest

from camel_jax.evaluate import gsm
from camel_jax.evaluate.task import BuildContext, Item, tulu_wrap

DIRECT_DEMOS = (
    "Q: There are 15 trees in the grove. Grove workers will plant trees in the grove today. After they are done, "
    "there will be 21 trees. How many trees did the grove workers plant today?\nAnswer: 6\n\n"
    "Q: If there are 3 cars in the parking lot and 2 more cars arrive, how many cars are in the parking lot?\n"
    "Answer: 5\n\n"
    "Q: Leah had 32 chocolates and her sister had 42. If they ate 35, how many pieces do they have left in total?\n"
    "Answer: 39\n\n"
    "Q: Jason had 20 lollipops. He gave Denny some lollipops. Now Jason has 12 lollipops. How many lollipops did "
    "Jason give to Denny?\nAnswer: 8\n\n"
    "Q: Shawn has five toys. For Christmas, he got two toys each from his mom and dad. How many toys does he have "
    "now?\nAnswer: 9\n\n"
    "Q: There were nine computers in the server room. Five more computers were installed each day, from monday to "
    "thursday. How many computers are now in the server room?\nAnswer: 29\n\n"
    "Q: Michael had 58 golf balls. On tuesday, he lost 23 golf balls. On wednesday, he lost 2 more. How many golf "
    "balls did he have at the end of wednesday?\nAnswer: 33\n\n"
    "Q: Olivia has $23. She bought five bagels for $3 each. How much money does she have left?\nAnswer: 8\n\n")
FIRST = ("The girls are trying to raise money for a carnival. Kim raises $320 more than Alexandra, who raises $430, "
         "and Maryam raises $400 more than Sarah, who raises $300. How much money, in dollars, did they all raise in "
         "total?")


def _ctx(shared_data, protocol, chat):
    render = (lambda u, p, plain: tulu_wrap(u, p)) if chat else (lambda u, p, plain: plain)
    return BuildContext(str(shared_data), protocol, None, render, chat)


def test_subsample_is_the_papers(shared_data):
    with open(shared_data / "gsm8k/test.jsonl") as f:
        test = [json.loads(line) for line in f]
    random.seed(42)  # exactly the paper's calls, on its list of dicts
    paper = random.sample(test, 200)
    items = gsm.SETTINGS[0].items(_ctx(shared_data, "fixed", False))
    assert [it.id for it in items[:5]] == ["gsm8k/1309", "gsm8k/228", "gsm8k/51", "gsm8k/563", "gsm8k/501"]
    assert [test[int(it.id.split("/")[1])]["question"] for it in items] == [x["question"] for x in paper]
    assert items[0].gold == "2280" and len(items) == 200 and len({it.id for it in items}) == 200


@pytest.mark.parametrize("protocol", ["paper", "fixed"])
def test_direct_prompt_byte_exact(shared_data, protocol):
    label = "Quesion: " if protocol == "paper" else "Question: "
    demos = DIRECT_DEMOS.replace("Q: ", label)
    plain, chat = (gsm.SETTINGS[0].items(_ctx(shared_data, protocol, c))[0].prompt for c in (False, True))
    assert plain == "Answer the following questions.\n\n" + demos + "Question: " + FIRST + "\nAnswer:"
    assert chat == ("<|user|>\nAnswer the following questions.\n\n" + demos + "Question: " + FIRST +
                    "\n<|assistant|>\nAnswer:")


def test_cot_prompt_byte_exact(shared_data):
    for protocol in ("paper", "fixed"):
        plain = gsm.SETTINGS[1].items(_ctx(shared_data, protocol, False))[0].prompt
        assert plain.startswith(
            "Answer the following questions.\n\nQuestion: There are 15 trees in the grove. Grove workers will plant "
            "trees in the grove today. After they are done, there will be 21 trees. How many trees did the grove "
            "workers plant today?\nAnswer: There are 15 trees originally. Then there were 21 trees after some more "
            "were planted. So there must have been 21 - 15 = 6. So the answer is 6.\n\nQuestion: If there are 3 cars")
        assert plain.endswith(
            "Question: Olivia has $23. She bought five bagels for $3 each. How much money does she have left?\n"
            "Answer: Olivia had 23 dollars. 5 bagels for 3 dollars each will be 5 x 3 = 15 dollars. So she has 23 - "
            "15 dollars left. 23 - 15 is 8. So the answer is 8.\n\nQuestion: " + FIRST + "\nAnswer:")
        assert plain.count("\nAnswer: ") == 8 and plain.count("So the answer is") == 8 and "Quesion" not in plain


@pytest.mark.parametrize("output, answer", [
    (" Kim raised 1,000 + 1,280 = 2,280 dollars. So the answer is 2,280.", "2280"),
    (" The total is 1,234,567", "1234567"),
    (" It dropped to -5 degrees", "5"),  # the paper's regex has no sign for integers: "-5" gives "5"
    (" about -2.5 or -.75", "-.75"),  # a decimal keeps its sign
    (" 3.14159", "3.14159"),
    (" 12, 13 and 14", "14"),  # a comma followed by a space is no thousands separator
    (" I do not know.", " I do not know."),  # no number: the output itself
    ("", ""),
])
def test_last_number_extraction(output, answer):
    assert gsm.extract(output) == answer


def test_exact_match_as_hf_evaluate():
    # ignore_case and ignore_punctuation: "-", "." and "$" vanish; whitespace does not (metrics.py, shared)
    recs = [{"answer": a, "gold": g} for a, g in zip(["18", "-5", "2.5", "$10", " 7", "Eight"],
                                                     ["18", "5", "25", "10", "7", "eight"])]
    assert gsm.score(recs)["exact_match"] == pytest.approx(100 * 5 / 6)
    assert [gsm.correct(r["answer"], Item("i", "p", r["gold"])) for r in recs] == [True] * 4 + [False, True]
    em = gsm.score([])["exact_match"]
    assert em != em  # nan: nothing scored


def test_score_and_correct_on_records():
    s = gsm.SETTINGS[1]
    item = Item("gsm8k/0", "p", "2280")
    outputs = [" So the answer is 2,280.", " So the answer is 2280 dollars", " 22.80", " no idea"]
    answers = [s.extract(o, item) for o in outputs]
    assert [s.correct(a, item) for a in answers] == [True, True, True, False]  # "22.80" normalises to "2280"
    m = s.score([{"answer": a, "gold": "2280"} for a in answers])
    assert m == {"exact_match": 75.0, "num_questions": 4}
    assert s.decoding.max_new_tokens == 512 and s.decoding.stop == ("\n",) and s.decoding.temperature == 0
