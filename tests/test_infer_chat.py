"""Chat formats (camel_jax/infer/chat.py) and the TÜLU chat_template camel_jax exports: through transformers'
apply_chat_template it gives exactly the ids camel_jax trains on, single- and multi-turn with system messages, on
the LLaMA SentencePiece tokenizer and on SmolLM2's byte-level BPE, under both newline_after_eos behaviours."""
import os

import jax
import pytest

transformers = pytest.importorskip("transformers")

from camel_jax import params_io  # noqa: E402
from camel_jax.convert import hf  # noqa: E402
from camel_jax.data.chat_format import chat_template, encode_messages  # noqa: E402
from camel_jax.infer.chat import encode_prompt  # noqa: E402
from camel_jax.model.config import get_preset  # noqa: E402
from camel_jax.model.llama import init_params  # noqa: E402
from camel_jax.model.tokenizer import load_tokenizer  # noqa: E402

SYSTEM = {"role": "system", "content": "You are a helpful assistant."}
USER = {"role": "user", "content": "What is the capital of France?"}
ANSWER = {"role": "assistant", "content": "Paris is the capital of France.\n"}
USER2 = {"role": "user", "content": "  And of Italy? Reply briefly.\n"}
ANSWER2 = {"role": "assistant", "content": "Rome."}
PROMPTS = {  # conversations a generation starts from (each ends with a user turn)
    "single": [USER], "system": [SYSTEM, USER], "multi": [SYSTEM, USER, ANSWER, USER2],
    "multi_no_system": [USER, ANSWER, USER2, ANSWER2, USER],
}


@pytest.fixture(scope="module")
def llama_tok(shared_data):
    return str(shared_data / "llama_tokenizer")


@pytest.fixture(scope="module", params=["llama", "smollm2"])
def tokenizer_dir(request):
    if request.param == "llama":
        return request.getfixturevalue("llama_tok")
    return request.getfixturevalue("smollm2").tokenizer_dir


def _exported(src: str, dst: str, newline_after_eos: bool):
    os.makedirs(dst)
    hf.write_tokenizer(src, dst, chat_template(newline_after_eos))
    return transformers.AutoTokenizer.from_pretrained(dst)


@pytest.mark.parametrize("newline", [False, True])
def test_exported_template_gives_training_ids(tokenizer_dir, newline, tmp_path):
    ours = load_tokenizer(tokenizer_dir)
    theirs = _exported(tokenizer_dir, str(tmp_path / "hf"), newline)
    for name, conv in PROMPTS.items():
        prompt = encode_prompt(conv, "tulu", ours, newline_after_eos=newline)
        got = theirs.apply_chat_template(conv, tokenize=True, add_generation_prompt=True, return_dict=False)
        assert got == prompt, name
        # The prompt is the prefix of the stream trained on once the answer follows, and the template renders that
        # whole stream too (no generation prompt).
        trained = encode_messages(ours, conv + [ANSWER2], 4096, newline_after_eos=newline)[0].tolist()
        assert trained[:len(prompt)] == prompt, name
        full = theirs.apply_chat_template(conv + [ANSWER2], tokenize=True, return_dict=False)
        assert full == trained, name


def test_hf_format_is_the_tokenizers_own_template(smollm2, tmp_path):
    ours = load_tokenizer(smollm2.tokenizer_dir)
    chatml = transformers.AutoTokenizer.from_pretrained(smollm2.tokenizer_dir)
    conv = PROMPTS["multi"]
    want = chatml.apply_chat_template(conv, tokenize=True, add_generation_prompt=True, return_dict=False)
    assert encode_prompt(conv, "hf", ours) == want
    assert ours.decode(want).endswith("assistant\n") and "<|im_start|>" in chatml.chat_template
    # Once the TÜLU template is the tokenizer's, "hf" and "tulu" are the same ids.
    _exported(smollm2.tokenizer_dir, str(tmp_path / "hf"), False)
    exported = load_tokenizer(str(tmp_path / "hf"))
    assert encode_prompt(conv, "hf", exported) == encode_prompt(conv, "tulu", ours)


def test_none_format_and_errors(llama_tok):
    tok = load_tokenizer(llama_tok)
    assert encode_prompt("The capital of France is", "none", tok) == [1, 450, 7483, 310, 3444, 338]
    assert encode_prompt([{"role": "user", "content": "Hi"}], "none", tok, add_bos=False) == tok.encode("Hi")
    assert encode_prompt("Hi", "tulu", tok) == encode_prompt([{"role": "user", "content": "Hi"}], "tulu", tok)
    with pytest.raises(ValueError, match="single message"):
        encode_prompt(PROMPTS["multi"], "none", tok)
    with pytest.raises(ValueError, match="unknown chat format"):
        encode_prompt("Hi", "chatml", tok)
    with pytest.raises(ValueError, match="no chat_template"):  # the bare LLaMA tokenizer carries none
        encode_prompt("Hi", "hf", tok)
    with pytest.raises(ValueError, match="unknown role"):
        encode_prompt([{"role": "bot", "content": "Hi"}], "tulu", tok)


def test_what_the_template_cannot_match(llama_tok, tmp_path):
    """Documented limits: a LLaMA tokenizer loaded with legacy=False does not prefix the piece after a special
    token with "▁" (camel_jax's pieces, like transformers <= 4.33, do), and a literal "</s>" typed in a message
    stays text in camel_jax's SentencePiece encoding but becomes EOS in transformers'."""
    ours = load_tokenizer(llama_tok)
    strict = transformers.AutoTokenizer.from_pretrained(llama_tok, legacy=False)
    strict.chat_template = chat_template()
    conv = PROMPTS["single"]
    assert strict.apply_chat_template(conv, tokenize=True, add_generation_prompt=True,
                                      return_dict=False) != encode_prompt(conv, "tulu", ours)
    theirs = _exported(llama_tok, str(tmp_path / "hf"), False)
    conv = [{"role": "user", "content": "Say </s> please."}]
    assert 2 in theirs.apply_chat_template(conv, tokenize=True, add_generation_prompt=True, return_dict=False)
    assert 2 not in encode_prompt(conv, "tulu", ours)


def test_export_hf_writes_the_tulu_template(llama_tok, tmp_path):
    cfg = get_preset("tiny-gqa", vocab_size=32000)
    ckpt = str(tmp_path / "ckpt")
    params_io.save_params(ckpt, jax.device_get(init_params(cfg, jax.random.PRNGKey(0))), cfg, tokenizer_dir=llama_tok)
    assert hf.resolve_chat_template(ckpt) == "keep"  # a converted checkpoint keeps what it came with
    os.makedirs(tmp_path / "run" / "checkpoints")
    assert hf.resolve_chat_template(str(tmp_path / "run")) == "tulu"  # a training run's: the format it trained
    with pytest.raises(ValueError, match="chat_template must be"):
        hf.resolve_chat_template(ckpt, "chatml")
    files = hf.export_hf(ckpt, str(tmp_path / "out"), chat_template="tulu")
    assert "chat_template.jinja" in files
    theirs = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "out"))
    conv = PROMPTS["multi"]
    assert theirs.apply_chat_template(conv, tokenize=True, add_generation_prompt=True,
                                      return_dict=False) == encode_prompt(conv, "tulu", load_tokenizer(llama_tok))
    hf.export_hf(ckpt, str(tmp_path / "kept"), chat_template="keep")
    assert not os.path.exists(tmp_path / "kept" / "chat_template.jinja")
