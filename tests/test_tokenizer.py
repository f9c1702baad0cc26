"""One tokenizer interface: the real LLaMA SentencePiece model gives LLaMA's known ids, BOS only when asked, and
text back; a path with no tokenizer fails naming it. (Both backends against open-instruct's token streams:
tests/test_chat_format.py.)"""
import pytest

from camel_jax.model.tokenizer import load_tokenizer


@pytest.fixture(scope="module")
def llama(shared_data):
    return load_tokenizer(str(shared_data / "llama_tokenizer"))


def test_llama_ids_are_the_published_ones(llama):
    assert (llama.vocab_size, llama.bos_id, llama.eos_id, llama.unk_id) == (32000, 1, 2, 0)
    assert llama.encode("Hello world") == [15043, 3186]  # LLaMA's ids for "▁Hello", "▁world"
    assert llama.encode("Hello world", add_bos=True) == [1, 15043, 3186]
    assert llama.id_to_piece(15043) == "▁Hello"
    assert llama.eos_token == "</s>"


def test_decode_round_trips(llama):
    text = "Instruction tuning: 12 datasets, 2 mixtures — and ünïcödé."
    assert llama.decode(llama.encode(text)) == text
    assert llama.decode(llama.encode(text, add_bos=True)) == text


def test_a_model_file_path_works_too(shared_data):
    tok = load_tokenizer(str(shared_data / "llama_tokenizer" / "tokenizer.model"))
    assert tok.encode("Hello world") == [15043, 3186]


def test_missing_tokenizer_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        load_tokenizer(str(tmp_path))
