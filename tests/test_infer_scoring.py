"""Log-likelihood scoring (camel_jax/infer/scoring.py): against transformers' log-probs on a small random preset
and on SmolLM2, lm-evaluation-harness's pair tokenization, one forward per shared context, results in the order
asked, and batch invariance across batch sizes 1/3/8.

Tolerances (fp32 on CPU; asserted, with the worst seen when written): small random preset vs transformers
<= 1e-5 per token and summed; SmolLM2 vs transformers <= 1e-4 per token and summed (2.2e-5 and 1.4e-5 seen);
batch sizes 1/3/8 agree, greedy flags identical and values within 1e-5 on the random preset (9.5e-7 seen, 28
requests up to 100 tokens) and 5e-5 on SmolLM2 (1.5e-5 seen). Not bitwise: XLA's fp32 summation order changes with
the batch's shape, both its rows (1.1e-5 at one fixed width) and its bucket width (5.7e-6 at one batch size)."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import jax  # noqa: E402

from smollm2_util import camel_params, hf_model  # noqa: E402

from camel_jax.convert import hf  # noqa: E402
from camel_jax.infer.scoring import PACK_SEGMENTS, Scorer, buckets, encode_pair, pack  # noqa: E402
from camel_jax.model.config import get_preset  # noqa: E402
from camel_jax.model.llama import init_params  # noqa: E402
from camel_jax.model.tokenizer import load_tokenizer  # noqa: E402


def _reference(model, requests):
    """(sum, per-token log-probs, is_greedy) by transformers, one unpadded forward per request."""
    out = []
    for ctx, cont in requests:
        ids = torch.tensor([list(ctx) + list(cont)])
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=ids).logits[0].double(), -1).numpy()
        pos = np.arange(len(ctx) - 1, len(ctx) + len(cont) - 1)
        tok = logp[pos, cont]
        out.append((tok.sum(), tok, bool(np.all(np.argmax(logp[pos], -1) == np.asarray(cont)))))
    return out


@pytest.fixture(scope="module")
def tiny():
    """A random tiny-gqa with a padded vocabulary (250 real of 256 rows), and the same weights in transformers."""
    cfg = get_preset("tiny-gqa", vocab_size=250, vocab_multiple=128, dtype="float32")
    params = jax.device_get(init_params(cfg, jax.random.PRNGKey(3)))
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**{
        k: v for k, v in hf.hf_config_dict(cfg).items() if k not in ("architectures", "torch_dtype")})).eval()
    model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in hf.hf_state_dict_from_params(params, cfg).items()})
    return cfg, params, model


def _requests(seed: int, n: int, vocab: int, max_ctx: int = 40):
    rng = np.random.RandomState(seed)
    reqs = []
    for k in range(n):
        ctx = [1] + rng.randint(3, vocab, rng.randint(1, max_ctx)).tolist()
        reqs.append((ctx, rng.randint(3, vocab, rng.randint(1, 6)).tolist()))
        if k % 3 == 0:  # same context, another one-token continuation: MMLU-like choices
            reqs.append((ctx, [int(rng.randint(3, vocab))]))
    return reqs


def test_tiny_matches_transformers(tiny):
    cfg, params, model = tiny
    reqs = _requests(0, 10, cfg.vocab_size)
    got = Scorer(params, cfg, batch_size=4).loglikelihood(reqs)
    for r, (s, tok, greedy) in zip(got, _reference(model, reqs)):
        assert r.num_tokens == len(tok) and r.is_greedy == greedy
        assert np.max(np.abs(np.asarray(r.token_logprobs) - tok)) <= 1e-5 and abs(r.logprob - s) <= 1e-5


def test_shared_contexts_order_and_next_token(tiny):
    cfg, params, _ = tiny
    ctx = [1, 5, 9, 11]
    reqs = [(ctx, [c]) for c in (20, 21, 22, 23)] + [([1, 7], [8, 9]), (ctx, [12, 13])]
    scorer = Scorer(params, cfg, batch_size=3)
    got = scorer.loglikelihood(reqs)
    assert scorer.forwards == 3  # the four choices share one row; ctx+[12] and [1, 7, 8] are the others
    dist = scorer.next_token_logprobs([ctx, [1, 7, 8]])
    assert dist.shape == (2, cfg.vocab_size) and np.allclose(np.exp(dist).sum(-1), 1.0, atol=1e-5)
    for r, c in zip(got[:4], (20, 21, 22, 23)):
        assert abs(r.logprob - dist[0, c]) <= 1e-6 and r.is_greedy == (int(np.argmax(dist[0])) == c)
    assert abs(got[4].token_logprobs[-1] - dist[1, 9]) <= 1e-6
    alone = Scorer(params, cfg, batch_size=1).loglikelihood([reqs[5], reqs[4]])  # any order, any batch
    assert [a.num_tokens for a in alone] == [2, 2]
    assert abs(alone[0].logprob - got[5].logprob) <= 1e-5 and abs(alone[1].logprob - got[4].logprob) <= 1e-5


def test_batch_invariance(tiny):
    cfg, params, _ = tiny
    reqs = _requests(1, 20, cfg.vocab_size, max_ctx=100)
    runs = {b: Scorer(params, cfg, batch_size=b).loglikelihood(reqs) for b in (1, 3, 8)}
    worst = 0.0
    for b in (3, 8):
        for a, r in zip(runs[1], runs[b]):
            assert a.is_greedy == r.is_greedy and a.num_tokens == r.num_tokens
            worst = max(worst, abs(a.logprob - r.logprob),
                        float(np.max(np.abs(np.subtract(a.token_logprobs, r.token_logprobs)))))
    print(f"batch sizes 1/3/8: worst difference {worst:.2e}")
    assert worst <= 1e-5, worst


def test_pack_best_fit_decreasing():
    """Each length goes to the open row it leaves the least room in; full rows close; every index placed once."""
    assert pack([5, 4, 3, 3, 2, 1], 8, 4) == [[0, 2], [1, 3, 5], [4]]  # 3 fills 5's row; 1 fills 4+3's
    assert pack([8, 8], 8, 4) == [[0], [1]]
    assert pack([1] * 10, 8, 3) == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]  # at most 3 a row
    with pytest.raises(ValueError, match="do not fit"):
        pack([9], 8, 4)


def test_packed_rows_score_as_alone(tiny):
    """Many short inputs share rows (so fewer rows than inputs are computed), each scored as if alone."""
    cfg, params, _ = tiny
    rng = np.random.RandomState(5)
    prompts = [[1] + rng.randint(3, cfg.vocab_size, rng.randint(2, 30)).tolist() for _ in range(40)]
    scorer = Scorer(params, cfg, batch_size=2)
    got = scorer.next_token_logprobs(prompts)
    lengths = sorted((len(p) for p in prompts), reverse=True)
    assert len(pack(lengths, scorer._width(lengths), PACK_SEGMENTS)) < len(prompts) // 4
    alone = np.stack([Scorer(params, cfg, batch_size=1).next_token_logprobs([p])[0] for p in prompts[:6]])
    assert np.max(np.abs(got[:6] - alone)) <= 1e-5


def test_truncation_buckets_and_errors(tiny):
    cfg, params, model = tiny
    assert buckets(128) == (16, 32, 64, 128) and buckets(100) == (16, 32, 64, 100)
    rng = np.random.RandomState(2)
    ctx, cont = [1] + rng.randint(3, 250, 60).tolist(), rng.randint(3, 250, 8).tolist()
    got = Scorer(params, cfg, max_len=32).loglikelihood([(ctx, cont)])[0]
    full = list(ctx) + cont
    (s, _, _), = _reference(model, [(full[-33:-8], cont)])  # the harness's window: (ctx+cont)[-(32+1):]
    assert got.num_tokens == 8 and abs(got.logprob - s) <= 1e-5
    with pytest.raises(ValueError, match="non-empty"):
        Scorer(params, cfg).loglikelihood([([1], [])])
    with pytest.raises(ValueError, match="batch_size"):
        Scorer(params, cfg, batch_size=0)


@pytest.mark.parametrize("spec", ["dp2,mp2", "fsdp2,mp2", "mp2", "dp4"])
def test_mesh_equals_one_device(tiny, spec):
    from camel_jax.model.mesh import build_mesh

    cfg, params, _ = tiny
    reqs = _requests(4, 8, cfg.vocab_size, max_ctx=60)
    want = Scorer(params, cfg, batch_size=4).loglikelihood(reqs)
    mesh = build_mesh(spec, cfg, devices=jax.devices()[:4 if "4" in spec or "," in spec else 2])
    got = Scorer(params, cfg, batch_size=4, mesh=mesh).loglikelihood(reqs)
    for a, r in zip(want, got):
        assert a.is_greedy == r.is_greedy and abs(a.logprob - r.logprob) <= 1e-5
    with pytest.raises(ValueError, match="does not split"):
        Scorer(params, cfg, batch_size=3, mesh=build_mesh("dp2", cfg, devices=jax.devices()[:2]))


def test_encode_pair_like_the_harness(shared_data):
    tok = load_tokenizer(str(shared_data / "llama_tokenizer"))
    ctx, cont = encode_pair(tok, "Question: 2+2=?\nAnswer: ", "4")
    assert ctx == [1] + tok.encode("Question: 2+2=?\nAnswer:")  # trailing space moved to the continuation
    assert ctx + cont == [1] + tok.encode("Question: 2+2=?\nAnswer: 4")
    assert encode_pair(tok, "", "Hello") == ([1], tok.encode("Hello"))
    assert encode_pair(tok, "The", " cat", add_bos=False)[0] == tok.encode("The")


def test_smollm2_matches_transformers(smollm2):
    params, cfg = camel_params(smollm2.ckpt_dir)
    tok = load_tokenizer(smollm2.tokenizer_dir)
    pairs = [("The capital of France is", " Paris"), ("The capital of France is", " Berlin"),
             ("Question: What is 2 + 2?\nAnswer:", " 4"), ("def add(a, b):\n    return", " a + b\n"),
             ("Once upon a time, there was a little", " girl who lived in a small village.")]
    reqs = [encode_pair(tok, c, x) for c, x in pairs]
    runs = {b: Scorer(params, cfg, batch_size=b).loglikelihood(reqs) for b in (1, 3, 8)}
    got = runs[3]
    spread = max(max(abs(a.logprob - r.logprob), float(np.max(np.abs(np.subtract(a.token_logprobs,
                                                                                   r.token_logprobs)))))
                 for b in (1, 8) for a, r in zip(runs[b], got))
    assert all(a.is_greedy == r.is_greedy for b in (1, 8) for a, r in zip(runs[b], got))
    print(f"smollm2 batch sizes 1/3/8: worst difference {spread:.2e}")
    assert spread <= 5e-5, spread
    worst_tok = worst_sum = 0.0
    for r, (s, t, greedy) in zip(got, _reference(hf_model(smollm2.hf_dir), reqs)):
        assert r.num_tokens == len(t) and r.is_greedy == greedy
        worst_tok = max(worst_tok, float(np.max(np.abs(np.asarray(r.token_logprobs) - t))))
        worst_sum = max(worst_sum, abs(r.logprob - s))
    print(f"smollm2 vs transformers: per token {worst_tok:.2e}, sums {worst_sum:.2e}")
    assert worst_tok <= 1e-4 and worst_sum <= 1e-4, (worst_tok, worst_sum)
    assert got[0].logprob > got[1].logprob and got[0].is_greedy  # " Paris" it is
