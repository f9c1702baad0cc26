"""MMLU (Hendrycks et al. 2021) 0- and 5-shot as the paper ran it (open_instruct.md §4.1, eval/mmlu/run_eval.py).

Prompt: the header "The following are multiple choice questions (with answers) about{ subject words}.\\n\\n" (the
double space is Hendrycks' `format_subject`), the first k dev rows as "{q}\\nA. {a}\\nB. {b}\\nC. {c}\\nD. {d}\\nAnswer:
{X}\\n\\n", then the test row ending in "\\nAnswer:"; in chat format the assistant turn opens with "The answer is:".
The answer is the argmax of the next-token log-probabilities of the candidates `encode(letter)[0]` (no leading space,
as open-instruct: LLaMA's "▁A", a byte-level BPE's bare "A"); the reported number is the micro-average over every
question, with subject, subcategory and category (Hendrycks' four) accuracies kept.

Length fallback: while the prompt is longer than the model's context, drop the last shot. Protocol `paper` measures
the plain prompt before chat wrapping and without BOS (the June-2023 order), `fixed` the prompt as the model sees it
(wrapped, BOS included; open-instruct cd54d085a). Both stop at 0 shots (the paper's loop would go on to k = -1,
which Hendrycks' `gen_prompt` reads as "all shots": never reached at 2048 tokens).

Reading the CSVs: `paper` reads them with pandas as the paper did, which turns the option text "None" into "nan" (10
cells of the test set, e.g. college_mathematics #8 shows "A. nan"); `fixed` reads the cells verbatim.
"""
from __future__ import annotations

import csv
import functools
import os

from camel_jax.evaluate.task import BuildContext, Item, Setting, encode_prompt

CHOICES = ("A", "B", "C", "D")
ANSWER_PREFIX = "The answer is:"

# Hendrycks' subject -> subcategory table and the four categories over them (open-instruct eval/mmlu/categories.py).
SUBCATEGORIES = {
    "abstract_algebra": "math", "anatomy": "health", "astronomy": "physics", "business_ethics": "business",
    "clinical_knowledge": "health", "college_biology": "biology", "college_chemistry": "chemistry",
    "college_computer_science": "computer science", "college_mathematics": "math", "college_medicine": "health",
    "college_physics": "physics", "computer_security": "computer science", "conceptual_physics": "physics",
    "econometrics": "economics", "electrical_engineering": "engineering", "elementary_mathematics": "math",
    "formal_logic": "philosophy", "global_facts": "other", "high_school_biology": "biology",
    "high_school_chemistry": "chemistry", "high_school_computer_science": "computer science",
    "high_school_european_history": "history", "high_school_geography": "geography",
    "high_school_government_and_politics": "politics", "high_school_macroeconomics": "economics",
    "high_school_mathematics": "math", "high_school_microeconomics": "economics", "high_school_physics": "physics",
    "high_school_psychology": "psychology", "high_school_statistics": "math", "high_school_us_history": "history",
    "high_school_world_history": "history", "human_aging": "health", "human_sexuality": "culture",
    "international_law": "law", "jurisprudence": "law", "logical_fallacies": "philosophy",
    "machine_learning": "computer science", "management": "business", "marketing": "business",
    "medical_genetics": "health", "miscellaneous": "other", "moral_disputes": "philosophy",
    "moral_scenarios": "philosophy", "nutrition": "health", "philosophy": "philosophy", "prehistory": "history",
    "professional_accounting": "other", "professional_law": "law", "professional_medicine": "health",
    "professional_psychology": "psychology", "public_relations": "politics", "security_studies": "politics",
    "sociology": "culture", "us_foreign_policy": "politics", "virology": "health", "world_religions": "philosophy",
}
CATEGORIES = {
    "STEM": ("physics", "chemistry", "biology", "computer science", "math", "engineering"),
    "humanities": ("history", "philosophy", "law"),
    "social sciences": ("politics", "culture", "economics", "geography", "psychology"),
    "other (business, health, misc.)": ("other", "business", "health"),
}
CATEGORY_OF = {sub: cat for cat, subs in CATEGORIES.items() for sub in subs}


def format_subject(subject: str) -> str:
    return "".join(" " + part for part in subject.split("_"))


def read_rows(path: str, protocol: str) -> list[list[str]]:
    """The rows of a headerless MMLU CSV (question, A, B, C, D, answer) as the prompt will print them."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: missing MMLU file (scripts/download_eval_data.sh fetches MMLU)")
    if protocol == "paper":
        import pandas as pd

        rows = [["{}".format(v) for v in row] for row in pd.read_csv(path, header=None).values.tolist()]
    else:
        with open(path, newline="", encoding="utf-8") as f:
            rows = [r for r in csv.reader(f) if r]
    for n, r in enumerate(rows, 1):
        if len(r) != 6 or r[5] not in CHOICES:
            raise ValueError(f"{path}:{n}: expected question,A,B,C,D,answer (A-D), got {len(r)} fields")
    return rows


def format_example(row: list[str], include_answer: bool = True) -> str:
    text = row[0] + "".join(f"\n{c}. {row[j + 1]}" for j, c in enumerate(CHOICES)) + "\nAnswer:"
    return text + f" {row[5]}\n\n" if include_answer else text


def few_shot_prefix(dev: list[list[str]], subject: str, k: int) -> str:
    header = f"The following are multiple choice questions (with answers) about {format_subject(subject)}.\n\n"
    return header + "".join(format_example(r) for r in dev[:k])


MARGIN = 8  # tokens: how far a sum of parts' counts may be from the whole's before the whole is tokenized


class _Lengths:
    """Token counts for the fallback without tokenizing 14k five-shot prompts: the prompt's parts (few-shot prefix,
    cached per subject and k; the question; the chat wrapping's overhead) are joined at newlines, where neither
    SentencePiece nor a byte-level BPE merges across, so the sum of their counts is the whole's up to a token or
    two (a part's own dummy prefix, BOS). Only a sum within MARGIN of the limit is settled by the exact count."""

    def __init__(self, ctx: BuildContext):
        self.ctx, self.tok = ctx, ctx.tokenizer
        self.fixed = ctx.protocol == "fixed"
        bos = int(self.fixed and self.tok.bos_id is not None and self.tok.bos_id >= 0)
        probe = "Question?\nAnswer:"
        wrap = len(self.tok.encode(ctx.render(probe, ANSWER_PREFIX, probe))) - len(self.tok.encode(probe))
        self.extra = bos + wrap if self.fixed else 0  # paper: the plain prompt, no BOS
        self._prefix: dict = {}
        self._texts: dict = {}

    def prefix_text(self, dev: list[list[str]], subject: str, k: int) -> str:
        if (subject, k) not in self._texts:
            self._texts[(subject, k)] = few_shot_prefix(dev, subject, k)
        return self._texts[(subject, k)]

    def prefix(self, text: str) -> int:
        if text not in self._prefix:
            self._prefix[text] = len(self.tok.encode(text))
        return self._prefix[text]

    def fits(self, prefix: str, end: str, plain: str, prompt: str, end_tokens: list) -> bool:
        limit, p = self.ctx.max_len, self.prefix(prefix)
        if p + len(end.encode("utf-8")) + 1 + self.extra + MARGIN <= limit:  # a token covers >= 1 byte
            return True
        if not end_tokens:
            end_tokens.append(len(self.tok.encode(end)))
        estimate = p + end_tokens[0] + self.extra
        if abs(estimate - limit) > MARGIN:
            return estimate < limit
        return len(encode_prompt(self.tok, prompt, True) if self.fixed else self.tok.encode(plain)) <= limit


def build_prompt(ctx: BuildContext, dev: list[list[str]], subject: str, row: list[str], shots: int,
                 lengths: _Lengths | None = None) -> tuple[str, int]:
    """(prompt, shots kept) for one test row, after the protocol's length fallback."""
    lengths = lengths or _Lengths(ctx)
    end = format_example(row, include_answer=False)
    k, end_tokens = min(shots, len(dev)), []
    while True:
        prefix = lengths.prefix_text(dev, subject, k)
        plain = prefix + end
        prompt = ctx.render(plain, ANSWER_PREFIX, plain)
        if k == 0 or lengths.fits(prefix, end, plain, prompt, end_tokens):
            return prompt, k
        k -= 1


def subjects(data_dir: str) -> list[str]:
    test_dir = os.path.join(data_dir, "mmlu", "test")
    if not os.path.isdir(test_dir):
        raise FileNotFoundError(f"{test_dir}: missing MMLU test folder (scripts/download_eval_data.sh fetches it)")
    names = sorted(f[:-len("_test.csv")] for f in os.listdir(test_dir) if f.endswith("_test.csv"))
    unknown = [s for s in names if s not in SUBCATEGORIES]
    if unknown:
        raise ValueError(f"{test_dir}: subjects {unknown} are not among Hendrycks' 57")
    return names


def items(ctx: BuildContext, shots: int) -> list[Item]:
    """Every test question of every subject (sorted, as the paper's `sorted(os.listdir)`), in file order."""
    out, lengths = [], _Lengths(ctx)
    for subject in subjects(ctx.data_dir):
        dev = read_rows(os.path.join(ctx.data_dir, "mmlu", "dev", f"{subject}_dev.csv"), ctx.protocol)[:shots]
        test = read_rows(os.path.join(ctx.data_dir, "mmlu", "test", f"{subject}_test.csv"), ctx.protocol)
        sub = SUBCATEGORIES[subject]
        for i, row in enumerate(test):
            prompt, k = build_prompt(ctx, dev, subject, row, shots, lengths)
            out.append(Item(f"{subject}/{i}", prompt, row[5], {"subject": subject, "subcategory": sub,
                                                               "category": CATEGORY_OF[sub], "shots": k,
                                                               "shots_asked": shots}))
    return out


def _pct(values: list) -> float:
    return 100.0 * sum(values) / len(values) if values else float("nan")


def score(records: list[dict], **_options) -> dict:
    """accuracy: micro-average over all questions (the paper's `average_acc`), in percent; per subject,
    subcategory and category too; how many prompts lost shots to the length fallback."""
    by = {"subject": {}, "subcategory": {}, "category": {}}
    hits, dropped = [], 0
    for r in records:
        hit = r["answer"] == r["gold"]
        hits.append(hit)
        for key, table in by.items():
            table.setdefault(r["meta"][key], []).append(hit)
        dropped += int(r["meta"]["shots"] < r["meta"]["shots_asked"])
    return {"accuracy": _pct(hits), "num_questions": len(hits), "length_fallbacks": dropped,
            **{f"{key}_accuracy": {k: _pct(v) for k, v in sorted(table.items())} for key, table in by.items()}}


def _setting(shots: int) -> Setting:
    return Setting(name=f"mmlu_{shots}shot", group="mmlu", column=f"MMLU {shots}-shot", metric="accuracy",
                   kind="choice", chat=True, items=functools.partial(items, shots=shots), score=score,
                   choices=CHOICES, subset_key=lambda item: item.meta["subject"],
                   correct=lambda answer, item: answer == item.gold)


SETTINGS = (_setting(0), _setting(5))
