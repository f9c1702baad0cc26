"""Vocabularies that do not divide the mesh (TÜLU's 32,001 tokens): stored padded to `padded_vocab`, accepted on
mp8, never predicted, sampled or trained, and equal to the unpadded model and loss on every mesh."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from camel_jax.generate import Sampling, generate
from camel_jax.model.config import PRESETS, LlamaConfig
from camel_jax.model.llama import Llama, abstract_params, init_params, param_shardings
from camel_jax.model.mesh import MeshError, build_mesh
from camel_jax.model.partition import batch_sharding
from camel_jax.model.vocab import MASKED_LOGIT
from camel_jax.params_io import config_from_dict, config_to_dict
from camel_jax.train.head_loss import head_nll_sum
from camel_jax.train.loss import token_nll
from camel_jax.train.optimizer import make_optimizer
from camel_jax.train.state import init_train_state
from camel_jax.train.step import make_train_step

V = 250  # 250 % 8 != 0: refused on mp8 before padding; stored as 256 rows
ODD = LlamaConfig(vocab_size=V, hidden_size=64, intermediate_size=176, num_layers=2, num_heads=8, num_kv_heads=8,
                  max_seq_len=64, dtype="float32")


def _tokens(batch=8, length=16, seed=0):
    return jnp.asarray(np.random.RandomState(seed).randint(0, V, (batch, length)), jnp.int32)


def test_padded_size_kept_apart_from_the_real_one():
    assert LlamaConfig(vocab_size=32001).padded_vocab == 32128
    assert (ODD.vocab_size, ODD.padded_vocab, ODD.replace(vocab_multiple=1).padded_vocab) == (250, 256, 250)
    assert all(cfg.padded_vocab == cfg.vocab_size for cfg in PRESETS.values())  # existing checkpoints load unchanged
    assert ODD.num_params() == sum(x.size for x in jax.tree.leaves(abstract_params(ODD)))
    with pytest.raises(ValueError, match="vocab_multiple must be positive"):
        ODD.replace(vocab_multiple=0).validate()


def test_model_config_json_keeps_the_real_size_and_old_files_mean_unpadded():
    d = config_to_dict(ODD)
    assert (d["vocab_size"], d["vocab_multiple"]) == (250, 128) and config_from_dict(d) == ODD
    del d["vocab_multiple"]  # written before padding existed: its tables are [vocab_size, D]
    assert config_from_dict(d).padded_vocab == 250


def test_odd_vocabulary_is_accepted_on_mp8():
    assert build_mesh("mp8", ODD).shape["mp"] == 8
    assert build_mesh("mp8", ODD.replace(vocab_size=32001)).shape["mp"] == 8
    with pytest.raises(MeshError, match=r"vocab_size 250 padded to 250 \(vocab_multiple=1\) is not divisible by "
                                        r"mp=8; a checkpoint converted before"):
        build_mesh("mp8", ODD.replace(vocab_multiple=1))


@pytest.mark.parametrize("tie", [False, True])
def test_padded_rows_and_columns_start_at_zero(tie):
    p = init_params(ODD.replace(tie_embeddings=tie), jax.random.PRNGKey(0))
    emb = np.asarray(p["embed"]["embedding"])
    assert emb.shape == (256, 64) and not emb[V:].any() and emb[:V].std() > 0.01
    if not tie:
        head = np.asarray(p["lm_head"]["kernel"])
        assert head.shape == (64, 256) and not head[:, V:].any() and head[:, :V].std() > 0.01


@pytest.fixture(scope="module")
def params():
    return init_params(ODD, jax.random.PRNGKey(1))


def _apply(p, tokens, trim=True, cfg=ODD):
    return Llama(cfg, trim_logits=trim).apply({"params": p}, tokens)[0]


@pytest.mark.parametrize("spec", ["mp8", "dp2,fsdp2,mp2"])
def test_sharded_logits_equal_one_device(params, spec):
    tokens = _tokens()
    ref = jax.jit(_apply)(params, tokens)
    assert ref.shape == (8, 16, V)
    mesh = build_mesh(spec, ODD, batch=8)
    sharded = jax.device_put(params, param_shardings(ODD, mesh))
    toks = jax.device_put(tokens, batch_sharding(mesh, 2))
    with jax.set_mesh(mesh):
        out = jax.jit(_apply)(sharded, toks)
        padded = jax.jit(lambda p, t: _apply(p, t, trim=False))(sharded, toks)
    np.testing.assert_allclose(np.asarray(out), np.asarray(ref), atol=1e-5, rtol=0)
    assert padded.shape == (8, 16, 256)
    np.testing.assert_allclose(np.asarray(padded)[..., :V], np.asarray(ref), atol=1e-5, rtol=0)
    assert (np.asarray(padded)[..., V:] == MASKED_LOGIT).all()


def _pad_would_win(params):
    """Padded head columns that, were they not masked, would be every token's most likely next token: the final
    norm keeps one coordinate h0, and columns +-100 e0 give a logit 100|h0| far above any real one (~0.02|h0|)."""
    p = jax.tree.map(jnp.asarray, params)
    p["final_norm"]["scale"] = jnp.zeros(64).at[0].set(1.0)
    p["lm_head"]["kernel"] = p["lm_head"]["kernel"].at[0, V].set(100.0).at[0, V + 1].set(-100.0)
    return p


def test_padded_ids_are_never_predicted_or_sampled(params):
    p = _pad_would_win(params)
    unmasked = np.asarray(jnp.einsum("btd,dv->btv", Llama(ODD).apply({"params": p}, _tokens(), head=False)[0],
                                     p["lm_head"]["kernel"]))
    assert (unmasked.argmax(-1) >= V).all()  # the trap is set
    padded = np.asarray(_apply(p, _tokens(), trim=False))
    assert (padded.argmax(-1) < V).all() and (padded[..., V:] == MASKED_LOGIT).all()
    prompts = [[1, 5, 9], [1, 7]]
    for sampling in (Sampling(), Sampling(1.0, 1.0), Sampling(2.0, 0.9)):
        outs = generate(p, ODD, prompts, max_new_tokens=12, eos_id=-1, sampling=sampling, seed=3)
        assert all(len(o) == 12 and max(o) < V for o in outs), sampling
    # Scoring over the padded logits is the loss over the real vocabulary.
    np.testing.assert_allclose(np.asarray(token_nll(jnp.asarray(padded), _tokens(seed=1))),
                               np.asarray(token_nll(_apply(p, _tokens()), _tokens(seed=1))), rtol=1e-6)


def test_fused_loss_and_gradients_on_dp2_mp2_equal_the_real_vocabulary():
    r = np.random.default_rng(0)
    b, t, d = 4, 37, 16
    h = r.normal(size=(b, t, d)).astype(np.float32)
    w = (r.normal(size=(d, 256)) * 0.3).astype(np.float32)  # padded columns nonzero: they must still not count
    w[:, V:] += 5.0
    targets = r.integers(0, V, (b, t)).astype(np.int32)
    weights = (r.random((b, t)) < 0.5).astype(np.float32)

    def reference(h, w_real):  # plain jnp over the real vocabulary only
        logits = jnp.einsum("btd,dv->btv", h, w_real, precision="highest")
        lse = jax.nn.logsumexp(logits, axis=-1)
        return jnp.sum((lse - jnp.take_along_axis(logits, targets[..., None], -1)[..., 0]) * weights)

    ref, (rh, rw) = jax.value_and_grad(reference, argnums=(0, 1))(h, w[:, :V])
    mesh = build_mesh("dp2,mp2", ODD, devices=jax.devices()[:4])
    rows = NamedSharding(mesh, P(("dp", "fsdp"), None))
    args = (jax.device_put(h, NamedSharding(mesh, P(("dp", "fsdp"), None, None))),
            jax.device_put(w, NamedSharding(mesh, P("fsdp", "mp"))),
            jax.device_put(targets, rows), jax.device_put(weights, rows))
    fn = jax.jit(jax.value_and_grad(lambda a, k, tg, m: head_nll_sum(a, k, tg, m, 8, 2, V), argnums=(0, 1)))
    with jax.set_mesh(mesh):
        got, (gh, gw) = fn(*args)
    np.testing.assert_allclose(float(got), float(ref), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(gh), np.asarray(rh), atol=1e-5, rtol=0)
    np.testing.assert_allclose(np.asarray(gw)[:, :V], np.asarray(rw), atol=1e-5, rtol=0)
    assert not np.asarray(gw)[:, V:].any()  # exactly zero
    with pytest.raises(ValueError, match="vocab 300 does not fit the kernel's 256 columns"):
        head_nll_sum(h, w, targets, weights, 8, None, 300)


def _batch(rows=8, length=16, seed=0):
    r = np.random.default_rng(seed)
    loss_mask = (r.random((1, rows, length)) < 0.6).astype(np.float32)
    return {"inputs": r.integers(0, V, (1, rows, length)).astype(np.int32),
            "targets": r.integers(0, V, (1, rows, length)).astype(np.int32), "loss_mask": loss_mask}


def _trim(p):
    p = {**jax.tree.map(np.asarray, p), "embed": {"embedding": np.asarray(p["embed"]["embedding"])[:V]}}
    if "lm_head" in p:
        p["lm_head"] = {"kernel": p["lm_head"]["kernel"][:, :V]}
    return p


@pytest.mark.parametrize("tie, loss_chunk", [(False, 0), (False, 8), (True, 8)])
def test_training_on_dp2_mp2_equals_the_unpadded_model_and_keeps_padding_zero(tie, loss_chunk):
    """Two AdamW steps (weight decay on) on dp2,mp2 with the padded table equal, on the real rows, the same steps of
    an unpadded (vocab_multiple=1) model on one device; the padded rows stay exactly zero."""
    cfg0 = ODD.replace(tie_embeddings=tie)
    params = init_params(cfg0, jax.random.PRNGKey(1))
    # eps 1e-3: an update moves at most as much as its gradient, so rounding-level gradient differences stay small.
    opt = make_optimizer(1e-3, total_steps=4, warmup_ratio=0.0, weight_decay=0.1, eps=1e-3)
    runs = {}
    for name, cfg, mesh, p in (
            ("padded", cfg0, build_mesh("dp2,mp2", cfg0, devices=jax.devices()[:4]), params),
            ("unpadded", cfg0.replace(vocab_multiple=1), build_mesh("dp1", devices=jax.devices()[:1]),
             _trim(params))):
        step = make_train_step(cfg, opt, mesh, 1, loss_chunk=loss_chunk)
        state = init_train_state(cfg, opt, jax.random.PRNGKey(0), params=p, shardings=step.state_shardings)
        losses = []
        for seed in (0, 1):
            state, m = step(state, _batch(seed=seed))
            losses.append(float(m["loss"]))
        runs[name] = (jax.device_get(state["params"]), losses)
    (pp, lp), (up, lu) = runs["padded"], runs["unpadded"]
    np.testing.assert_allclose(lp, lu, rtol=1e-5)
    assert not pp["embed"]["embedding"][V:].any() and (tie or not pp["lm_head"]["kernel"][:, V:].any())
    for (path, a), b in zip(jax.tree_util.tree_flatten_with_path(_trim(pp))[0], jax.tree.leaves(up)):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=0, err_msg=jax.tree_util.keystr(path))
