"""What one benchmark setting (one column of the paper's table) is, as data the driver can run and rescore.

Each benchmark module (mmlu.py, gsm.py, bbh.py, tydiqa.py, humaneval.py, alpaca_farm.py) exports `SETTINGS`, a tuple
of `Setting`s; `evaluate/registry.py` collects them into the one task table (and SeqIO tasks). A module knows its
protocol (prompts, shots, subsampling, extraction, metrics); the driver knows the engine, files, resume and the
table. Prompts are built as (user turn, assistant prefix, plain text) and rendered by the context, so one module
serves the paper's hard-coded TÜLU wrapping, a model's own `hf` template and no chat format.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Sequence

PROTOCOLS = ("fixed", "paper")  # fixed (default): the paper's prompts and metrics with its June-2023 bugs fixed
KINDS = ("choice", "generate")


@dataclasses.dataclass(frozen=True)
class Item:
    """One evaluated example. `prompt` is the exact text the model is conditioned on (chat-rendered, no BOS: the
    driver adds BOS per protocol). `id` is stable across runs and unique within the setting."""
    id: str
    prompt: str
    gold: Any  # JSON-serialisable
    meta: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # subject/category, task, lang, task_id...


@dataclasses.dataclass(frozen=True)
class Decoding:
    """How a `generate` setting decodes (the paper's values)."""
    max_new_tokens: int
    temperature: float = 0.0  # 0: greedy
    top_p: float = 1.0
    n: int = 1  # samples per item (Codex: 20)
    stop: tuple[str, ...] = ()  # truncate the text at the first of these (and, protocol fixed, stop decoding there)
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class BuildContext:
    """What a module needs to build its items. `render(user, prefix, plain)` gives the prompt text in the run's
    chat format (the module passes all three; `plain` is the paper's non-chat string). `tokenizer` is a
    camel_jax.model.tokenizer.Tokenizer (MMLU's length fallback, TydiQA's context truncation)."""
    data_dir: str  # the ../shared/data layout: mmlu/, gsm8k/, bbh/, tydiqa/, humaneval/, alpaca_eval/
    protocol: str
    tokenizer: Any
    render: Callable[[str, str, str], str]
    chat: bool  # whether render wraps in a chat format (False: render returns `plain`)
    max_len: int = 2048  # the model's context (MMLU's fallback drops shots while the prompt exceeds it)


@dataclasses.dataclass(frozen=True)
class Setting:
    """name: the task name users type ("gsm_cot"); group: the benchmark ("gsm"), whose settings are averaged for
    the table's Average; column: the paper's column title; metric: the key of `score`'s result shown in the column
    (a percentage, 0-100). chat: whether the paper ran it in chat format (Codex did not).

    items(ctx) -> all items in the protocol's order, with the paper's seeded subsampling already applied; the
    driver's --max_examples takes a deterministic subset of them (`subset_key(item)` groups it, e.g. MMLU spreads
    over subjects).
    choice kind: the model's next-token log-probs over `choices` (strings, each one token; the driver scores
    `encode(choice)[0]`, open-instruct's candidate ids) at the end of the prompt; the record's `answer` is the argmax
    choice.
    generate kind: `decoding`; `extract(text, item)` gives the record's `answer` from one generation (after the
    stop truncation).
    score(records, **options) -> metrics dict, from prediction records (dicts with at least id, gold, answer,
    meta; generate also `output` or `outputs` (n samples); choice also `logprobs` per choice). It must be pure
    (rescore without a model); options carry run settings such as the code sandbox or the judge.
    correct(answer, item) -> the record's `correct` (bool or a float), written with each prediction; None when
    correctness only exists for the whole set (a judge, a sandbox run). sample_seed: the seed of the setting's own
    subsampling (GSM's 42), recorded in the run record. paper_bos: protocol `paper` feeds this setting's prompts
    WITH BOS (the June-2023 AlpacaFarm script tokenized with the default AutoTokenizer, unlike the other paper
    tasks, open_instruct.md §4.0/§4.6); protocol `fixed` always does."""
    name: str
    group: str
    column: str
    metric: str
    kind: str
    chat: bool
    items: Callable[[BuildContext], Sequence[Item]]
    score: Callable[..., dict]
    decoding: Decoding | None = None
    choices: tuple[str, ...] = ()
    extract: Callable[[str, Item], Any] | None = None
    subset_key: Callable[[Item], str] | None = None
    correct: Callable[[Any, Item], Any] | None = None
    sample_seed: int | None = None
    paper_bos: bool = False

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"setting {self.name}: kind {self.kind!r} not in {KINDS}")
        if self.kind == "generate" and (self.decoding is None or self.extract is None):
            raise ValueError(f"setting {self.name}: a generate setting needs decoding and extract")
        if self.kind == "choice" and not self.choices:
            raise ValueError(f"setting {self.name}: a choice setting needs choices")


def add_bos(setting: Setting, protocol: str) -> bool:
    """Whether the setting's prompts start with BOS under `protocol` (fixed: always; paper: as the paper's script)."""
    return protocol == "fixed" or setting.paper_bos


def encode_prompt(tokenizer, prompt: str, add_bos: bool, bos_text: bool = False) -> list[int]:
    """The ids the model is fed: the prompt tokenized as one string, BOS first when asked and not already there (a
    chat template such as SmolLM2's begins with the BOS token's own text).

    bos_text (protocol paper): with a SentencePiece tokenizer, the BOS piece's text ("<s>") inside the prompt is
    the BOS id, as the June-2023 slow LlamaTokenizer read it (it split special-token text out before
    SentencePiece, each remaining chunk encoded on its own); TydiQA's truncated passages carry that text. A Hugging
    Face tokenizer already does so itself."""
    bos = tokenizer.bos_id
    sp = getattr(tokenizer, "_sp", None) is not None
    if bos_text and sp and bos is not None and bos >= 0 and tokenizer.id_to_piece(bos) in prompt:
        ids = []
        for n, chunk in enumerate(prompt.split(tokenizer.id_to_piece(bos))):
            ids += ([bos] if n else []) + (tokenizer.encode(chunk) if chunk else [])
    else:
        ids = tokenizer.encode(prompt)
    if add_bos and bos is not None and bos >= 0 and (not ids or ids[0] != bos):
        ids = [bos] + ids
    return ids


def tulu_wrap(user: str, prefix: str) -> str:
    """The paper's June-2023 hard-coded chat wrapping (open_instruct.md §4.0), used for chat format `tulu`."""
    return "<|user|>\n" + user.strip() + "\n<|assistant|>\n" + prefix
