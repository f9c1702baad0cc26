"""The benchmark interface: the TÜLU wrapping, Setting's checks, which protocol adds BOS for which setting, and
the paper protocol's reading of a literal "<s>" as the BOS id (against the Hugging Face LLaMA tokenizer)."""
import pytest

from camel_jax.evaluate.task import Decoding, Setting, add_bos, encode_prompt, tulu_wrap


def _setting(**kw):
    base = dict(name="x", group="g", column="X", metric="acc", kind="generate", chat=True, items=lambda ctx: [],
                score=lambda records: {}, decoding=Decoding(8), extract=lambda text, item: text)
    return Setting(**{**base, **kw})


def test_tulu_wrap_is_the_june_2023_string():
    assert tulu_wrap("  Q?\n", "Answer:") == "<|user|>\nQ?\n<|assistant|>\nAnswer:"


def test_setting_checks_its_kind():
    _setting()
    with pytest.raises(ValueError, match="kind"):
        _setting(kind="rank")
    with pytest.raises(ValueError, match="needs decoding"):
        _setting(decoding=None)
    with pytest.raises(ValueError, match="needs choices"):
        _setting(kind="choice")


def test_bos_per_protocol_and_setting():
    assert not _setting().paper_bos  # the default: the paper's eval prompts had no BOS
    assert add_bos(_setting(), "fixed") and not add_bos(_setting(), "paper")
    assert add_bos(_setting(paper_bos=True), "paper") and add_bos(_setting(paper_bos=True), "fixed")


def test_literal_bos_text_is_the_bos_id_as_the_llama_tokenizer_reads_it(shared_data):
    """TydiQA's paper prompts carry "<s>" where a passage was truncated; the LLaMA tokenizer (transformers, legacy
    SentencePiece behaviour) reads it as id 1, and encode_prompt(bos_text=True) gives the same ids."""
    from transformers import AutoTokenizer

    from camel_jax.evaluate import registry, run
    from camel_jax.evaluate.task import BuildContext
    from camel_jax.model.tokenizer import load_tokenizer

    path = str(shared_data / "llama_tokenizer")
    tok, hf = load_tokenizer(path), AutoTokenizer.from_pretrained(path)
    s = registry.SETTINGS["tydiqa_goldp"]
    items = s.items(BuildContext(str(shared_data), "paper", tok, run.make_render("tulu", tok, True), True))
    with_bos = [it.prompt for it in run.subset(items, 12, s.subset_key) if "<s>" in it.prompt]
    assert len(with_bos) >= 3
    spaced = [p for p in with_bos if any(c[:1].isspace() for c in p.split("<s>")[1:])]
    assert spaced and len(spaced) < len(with_bos)
    for prompt in with_bos + ["<s>abc", "Passage: <s>The Nile.\nQ: x<s>\n", "no bos here", "a <s> b"]:
        ids = encode_prompt(tok, prompt, add_bos=False, bos_text=True)
        assert ids.count(tok.bos_id) == prompt.count("<s>")
        if prompt not in spaced and prompt != "a <s> b":
            assert ids == hf(prompt, add_special_tokens=False).input_ids
    # A chunk after "<s>" that opens with a space (a passage decoded from "▁▁..."): the June-2023 slow tokenizer
    # SentencePiece-encoded each chunk on its own, dummy prefix included ("▁▁" = 259); transformers' converted
    # tokenizer of today writes one "▁" there, so it is no reference for this case.
    assert encode_prompt(tok, "a <s> b", False, True) == tok.encode("a ") + [tok.bos_id] + tok.encode(" b")
    assert tok.encode(" b") == [29871, 289] and hf("a <s> b", add_special_tokens=False).input_ids == [263, 29871, 1,
                                                                                                         289]
    assert encode_prompt(tok, "Passage: <s>The", add_bos=True, bos_text=True)[:2] == [tok.bos_id, 6978]
    assert tok.bos_id not in encode_prompt(tok, with_bos[0], add_bos=False)  # fixed/bos_text off: spelt as text
