"""generate: the cached loop equals uncached recomputation, padded batches equal single prompts, EOS stops rows,
sampling keeps to the nucleus, and the CLI prints a continuation."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from camel_jax.generate import GREEDY, Sampling, generate, greedy_generate, left_pad, main, select_tokens
from camel_jax.model.llama import Llama, init_params
from camel_jax.model.config import get_preset

CFG = get_preset("tiny-gqa", dtype="float32")
PROMPTS = [[1, 17, 42, 99, 3], [1, 200], [1, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 18, 19, 20, 21, 22]]


@pytest.fixture(scope="module")
def params():
    # Scaled-up weights give peaked, well-separated logits, so argmax ties cannot flip between code paths.
    p = jax.jit(lambda k: init_params(CFG, k))(jax.random.PRNGKey(0))
    return jax.tree_util.tree_map(lambda x: x * 4.0 if x.ndim > 1 else x, p)


@jax.jit
def _full_forward(params, tokens):
    return Llama(CFG).apply({"params": params}, tokens)[0]


def uncached_greedy(params, prompt, n, width=32):
    """Argmax over a fresh forward pass of the whole sequence at every step (right padding cannot affect earlier
    positions under the causal mask, so one compiled width serves every length)."""
    ids = list(prompt)
    for _ in range(n):
        tokens = np.zeros((1, width), np.int32)
        tokens[0, :len(ids)] = ids
        ids.append(int(jnp.argmax(_full_forward(params, jnp.asarray(tokens))[0, len(ids) - 1])))
    return ids[len(prompt):]


def test_cached_greedy_equals_uncached_recomputation(params):
    for prompt in PROMPTS:
        assert greedy_generate(params, CFG, [prompt], 12, eos_id=-1) == [uncached_greedy(params, prompt, 12)]


def test_left_padded_batch_equals_prompts_alone(params):
    batched = greedy_generate(params, CFG, PROMPTS, 10, eos_id=-1)
    alone = [greedy_generate(params, CFG, [p], 10, eos_id=-1)[0] for p in PROMPTS]
    assert batched == alone and all(len(x) == 10 for x in batched)
    tokens, mask = left_pad(PROMPTS)
    assert tokens.shape == (3, 32) and mask.sum(1).tolist() == [5, 2, 18] and tokens[1, -2:].tolist() == [1, 200]


def test_eos_stops_each_row_and_is_kept(params):
    full = greedy_generate(params, CFG, PROMPTS, 10, eos_id=-1)
    eos = full[0][3]  # a token row 0 produces at step 3
    out = greedy_generate(params, CFG, PROMPTS, 10, eos_id=eos)
    for row, ref in zip(out, full):
        stop = ref.index(eos) + 1 if eos in ref else len(ref)
        assert row == ref[:stop]
    assert len(out[0]) <= 4 and out[0][-1] == eos


def test_sampling():
    logits = jnp.log(jnp.asarray([[0.5, 0.3, 0.15, 0.05]] * 512))
    keys = jax.random.PRNGKey(3)
    assert set(np.asarray(select_tokens(logits, keys, Sampling(1.0, 0.7))).tolist()) == {0, 1}  # 0.5+0.3 >= 0.7
    assert set(np.asarray(select_tokens(logits, keys, Sampling(1.0, 1e-6))).tolist()) == {0}
    full = np.bincount(np.asarray(select_tokens(logits, keys, Sampling(1.0, 1.0))), minlength=4) / 512
    assert np.all(np.abs(full - [0.5, 0.3, 0.15, 0.05]) < 0.07)
    assert np.asarray(select_tokens(logits[:2], keys, GREEDY)).tolist() == [0, 0]


def test_sampled_generation_is_seeded(params):
    s = Sampling(temperature=1.0, top_p=0.9)
    a = generate(params, CFG, PROMPTS, 8, eos_id=-1, sampling=s, seed=1)
    assert a == generate(params, CFG, PROMPTS, 8, eos_id=-1, sampling=s, seed=1)
    assert generate(params, CFG, PROMPTS, 8, eos_id=-1, sampling=Sampling(1.0, 1e-6)) == \
        greedy_generate(params, CFG, PROMPTS, 8, eos_id=-1)


def test_bad_requests_are_explained(params):
    with pytest.raises(ValueError, match="at least one token"):
        greedy_generate(params, CFG, [[1], []], 4)
    with pytest.raises(ValueError, match=r"prompt \(18 tokens\) \+ max_new_tokens \(120\) exceeds .* 128"):
        greedy_generate(params, CFG, PROMPTS, 120)
    assert len(greedy_generate(params, CFG, PROMPTS, 110, eos_id=-1)[2]) == 110  # fits without bucket padding


def test_cli_prints_the_stories260k_continuation(tmp_path, capsys):
    from test_llama2c import STORIES_BIN, TOK512_BIN
    from camel_jax.convert.llama2c import import_llama2c

    import_llama2c(STORIES_BIN, TOK512_BIN, str(tmp_path / "ckpt"))
    assert main(["--checkpoint", str(tmp_path / "ckpt"), "--prompt", "Once upon a time, there was a little girl",
                 "--max_new_tokens", "6"]) == 0
    assert capsys.readouterr().out == " named Lily. She loved\n"
    assert main(["--checkpoint", str(tmp_path / "ckpt"), "--prompt", "Once upon a time, there was a little girl",
                 "--max_new_tokens", "6", "--stop", "ly."]) == 0  # through the engine: cut inside a token
    assert capsys.readouterr().out == " named Li\n"
    assert main(["--checkpoint", str(tmp_path / "nothing"), "--prompt", "x"]) == 2
    assert "is not a camel_jax checkpoint" in capsys.readouterr().err
