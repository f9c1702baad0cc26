"""open-instruct's random instruction templates for single-turn data (TÜLU v1, June 2023).

The 14 "with input" and 14 "without input" (prompt, completion, weight) triples are the exact strings and
weights of allenai/open-instruct `open_instruct/instruction_encode_templates.py` at e44fcf58 (list order kept,
because `choices` maps a uniform draw through the cumulative weights in list order; typo "Plase" is in the source).

Why an explicit `rng`: the reference calls the global `random.choices` / `random.sample`, so its output depends
on which datasets ran before. We take a `random.Random` per dataset; `random.Random(seed).choices(...)` draws the
same template sequence as `random.seed(seed); random.choices(...)`, so a dataset converted alone reproduces the
reference exactly.
"""
from __future__ import annotations

import random
from typing import Iterable, Mapping

TEMPLATES_WITH_INPUT: tuple[tuple[str, str, float], ...] = (
    ("{instruction}\n\n{input}\n\n", "{output}", 0.2),
    ("{instruction}\n{input}\n\n", "{output}", 0.1),
    ("{instruction}\n{input}\n", "{output}", 0.1),
    ("{instruction}\n\nInput: {input}\n\nOutput:", "{output}", 0.05),
    ("{instruction}\nInput: {input}\nOutput:", "{output}", 0.05),
    ("{instruction}\n{input}\n\nResponse:", "{output}", 0.05),
    ("{instruction}\n\nAdditional Context:\n{input}\n\nAnswer:", "{output}", 0.05),
    ("Task: {instruction}\nInput: {input}\nOutput:", "{output}", 0.05),
    ("Task: {instruction}\n\n{input}\n\n", "{output}", 0.05),
    ("Task: {instruction}\n\n{input}\n\nAnswer:", "{output}", 0.05),
    ("You need to complete the following task:\n\n{instruction}\n\n{input}\n\nAnswer:", "{output}", 0.05),
    ("{instruction}\n\nNow complete the following instance -\nInput: {input}\nOutput:", "{output}", 0.05),
    ("Instruction:{instruction}\n\nInput: {input}\n\n", "{output}", 0.05),
    ("Below is an instruction that describes a task, paired with an input that provides further context. "
     "Write a response that appropriately completes the request.\n\n"
     "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:", "{output}", 0.1),  # Alpaca
)

TEMPLATES_WITHOUT_INPUT: tuple[tuple[str, str, float], ...] = (
    ("{instruction}\n\n", "{output}", 0.2),
    ("{instruction}\n", "{output}", 0.1),
    ("{instruction}", "\n{output}", 0.1),
    ("{instruction} Output:", "{output}", 0.05),
    ("{instruction}\nResponse:", "{output}", 0.05),
    ("{instruction}\n\nAnswer:", "{output}", 0.05),
    ("Task: {instruction}\n\n", "{output}", 0.05),
    ("Instruction: {instruction}\n", "{output}", 0.05),
    ("Instruction: {instruction}\nOutput:", "{output}", 0.05),
    ("You need to complete the following task:\n\n{instruction}\n\n", "{output}", 0.05),
    ("Can you help with this?\n\n{instruction}\n", "{output}", 0.05),
    ("Plase answer the following request: {instruction}\nAnswer:", "{output}", 0.05),
    ("Tell me how would you respond to the following request.\n{instruction}\n", "{output}", 0.05),
    ("Write a response that appropriately completes the request.\n\n"
     "### Instruction:\n{instruction}\n\n### Response:", "{output}", 0.1),  # Alpaca
)

_W_IN = [w for _, _, w in TEMPLATES_WITH_INPUT]
_W_NO = [w for _, _, w in TEMPLATES_WITHOUT_INPUT]


def has_input(input: str | None) -> bool:
    return input is not None and input.strip() != ""


def encode_instruction_example(instruction: str, input: str | None, output: str, rng: random.Random,
                               random_template: bool = True) -> dict[str, str]:
    """{"prompt", "completion"} for one instruction; draws exactly one `rng.choices` when random_template."""
    if random_template:
        if has_input(input):
            prompt_t, completion_t, _ = rng.choices(TEMPLATES_WITH_INPUT, weights=_W_IN)[0]
            prompt = prompt_t.format(instruction=instruction.strip(), input=input.strip())
        else:
            prompt_t, completion_t, _ = rng.choices(TEMPLATES_WITHOUT_INPUT, weights=_W_NO)[0]
            prompt = prompt_t.format(instruction=instruction.strip())
        return {"prompt": prompt, "completion": completion_t.format(output=output.strip())}
    if has_input(input):
        return {"prompt": instruction.strip() + "\n\n" + input.strip() + "\n\n", "completion": output.strip()}
    return {"prompt": instruction.strip() + "\n\n", "completion": output.strip()}


def encode_few_shot_example(instruction: str, exemplars: Iterable[Mapping[str, str]], input: str,
                            output: str) -> dict[str, str]:
    """SuperNI's few-shot prompt: definition, then "Input:\\n…\\nOutput:\\n…" per exemplar, then the query."""
    prompt = instruction.strip() + "\n\n"
    for ex in exemplars:
        prompt += "Input:\n" + ex["input"].strip() + "\n"
        prompt += "Output:\n" + ex["output"].strip() + "\n\n"
    prompt += "Input:\n" + input.strip() + "\n" + "Output:\n"
    return {"prompt": prompt, "completion": output.strip()}


def single_turn(prompt: str, completion: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": completion}]
