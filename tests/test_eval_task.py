import pytest

from camel_jax.evaluate.task import Decoding, Setting, tulu_wrap


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
