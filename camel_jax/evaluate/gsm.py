"""GSM8K direct and chain-of-thought, 8-shot, as the paper ran it (open_instruct.md §4.2, eval/gsm/run_eval.py).

Items: `random.seed(42); random.sample(test, 200)` of the 1,319 test questions (the paper jobs' --max_num_examples
200), in the sample's order; gold = the text after "####", thousands commas removed. The 8 exemplars of
gsm8k/cot_exemplars.json (Wei et al. Table 20), all, in file order: CoT demos "Question: {q}\\nAnswer: {cot}",
direct demos "Quesion: {q}\\nAnswer: {short}" — the source's typo, kept under protocol `paper`, spelt right under
`fixed`. Prompt: "Answer the following questions.\\n\\n" + demos joined by "\\n\\n" + "\\n\\nQuestion: {q}\\nAnswer:"
(chat: the user turn ends at the question, the assistant turn opens with "Answer:").

Decoding: greedy, 512 new tokens, stop at "\\n" (the paper's stop id `encode("\\n")[-1]`, which on LLaMA is the only
token holding a newline; here matched in the text, which also catches a byte-level BPE's "\\n\\n" tokens). Paper: the
stop only truncates the text after decoding to EOS/512 (the June-2023 KeyWordsCriteria never fired); fixed: decoding
stops there. Answer: commas between digits removed, the last match of `[-+]?\\d*\\.\\d+|\\d+` (so "-5" gives "5",
as the paper), else the whole output. Metric: HF evaluate's exact_match(ignore_case, ignore_punctuation) × 100
(metrics.py, shared with BBH); NaN over no records, which the table shows as "no score".
"""
from __future__ import annotations

import functools
import json
import os
import random
import re

from camel_jax import cli
from camel_jax.evaluate import metrics
from camel_jax.evaluate.task import BuildContext, Decoding, Item, Setting

SAMPLE_SEED = 42
NUM_EXAMPLES = 200
DECODING = Decoding(max_new_tokens=512, stop=("\n",))


def read_test(data_dir: str) -> list[tuple[int, str, str]]:
    """(line index, question, gold) of gsm8k/test.jsonl."""
    path = os.path.join(data_dir, "gsm8k", "test.jsonl")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: missing GSM8K test file (scripts/download_eval_data.sh fetches it)")
    out = []
    for n, rec in cli.json_lines(path, ValueError):
        try:
            gold = re.sub(r"(\d),(\d)", r"\1\2", rec["answer"].split("####")[1].strip())
            float(gold)
            out.append((len(out), rec["question"], gold))
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            raise ValueError(f"{path}:{n}: expected {{\"question\", \"answer\": \"... #### <number>\"}}") \
                from None
    return out


def subsample(test: list) -> list:
    """The paper's 200: a fresh random.seed(42) stream, one random.sample (the whole set when not larger)."""
    return random.Random(SAMPLE_SEED).sample(test, NUM_EXAMPLES) if len(test) > NUM_EXAMPLES else list(test)


def demonstrations(data_dir: str, cot: bool, protocol: str) -> str:
    path = os.path.join(data_dir, "gsm8k", "cot_exemplars.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: missing the 8 GSM exemplars (scripts/download_eval_data.sh writes them)")
    with open(path, encoding="utf-8") as f:
        exemplars = json.load(f)
    label = "Question: " if cot or protocol == "fixed" else "Quesion: "
    demos = [label + ex["question"] + "\nAnswer: " + ex["cot_answer" if cot else "short_answer"] for ex in exemplars]
    return "Answer the following questions.\n\n" + "\n\n".join(demos) + "\n\n"


def items(ctx: BuildContext, cot: bool) -> list[Item]:
    prefix = demonstrations(ctx.data_dir, cot, ctx.protocol)
    out = []
    for idx, question, gold in subsample(read_test(ctx.data_dir)):
        user = prefix + "Question: " + question.strip()
        out.append(Item(f"gsm8k/{idx}", ctx.render(user, "Answer:", user + "\nAnswer:"), gold))
    return out


def extract(text: str, item: Item | None = None) -> str:
    """The last number of the output (thousands commas removed), else the output itself."""
    text = re.sub(r"(\d),(\d)", r"\1\2", text)
    numbers = re.findall(r"[-+]?\d*\.\d+|\d+", text)
    return numbers[-1] if numbers else text


def score(records: list[dict], **_options) -> dict:
    em = metrics.exact_match([r["answer"] for r in records], [r["gold"] for r in records])
    return {"exact_match": em if records else float("nan"), "num_questions": len(records)}


def correct(answer: str, item: Item) -> bool:
    return metrics.exact_match_flags([answer], [item.gold])[0]


def _setting(cot: bool) -> Setting:
    kind = "cot" if cot else "direct"
    return Setting(name=f"gsm_{kind}", group="gsm", column="GSM CoT" if cot else "GSM Direct",
                   metric="exact_match", kind="generate", chat=True, items=functools.partial(items, cot=cot),
                   score=score, decoding=DECODING, extract=extract,
                   correct=correct, sample_seed=SAMPLE_SEED)


SETTINGS = (_setting(False), _setting(True))
