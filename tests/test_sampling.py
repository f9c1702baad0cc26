"""infer.sampling: top-k / top-p / temperature keep the hand-computed sets and distributions, parameters are per row,
a row's draw depends only on its own key and index, and stop sequences match as token suffixes."""
import jax
import jax.numpy as jnp
import numpy as np

from camel_jax.infer.sampling import filtered_logits, request_key, sample, stop_hit

PROBS = np.array([0.5, 0.3, 0.15, 0.05])


def _dist(temperature, top_k, top_p):
    logits = jnp.log(jnp.asarray([PROBS] * len(temperature), jnp.float32))
    f = filtered_logits(logits, jnp.asarray(temperature, jnp.float32), jnp.asarray(top_k, jnp.int32),
                        jnp.asarray(top_p, jnp.float32))
    return np.asarray(jax.nn.softmax(f, axis=-1))


def test_filtered_distributions_are_the_hand_computed_ones():
    got = _dist([1.0, 1.0, 1.0, 1.0, 2.0, 1.0, 1.0], [0, 2, 0, 0, 0, 3, 1], [1.0, 1.0, 0.7, 0.85, 1.0, 0.7, 1.0])
    sq = np.sqrt(PROBS)
    want = [PROBS,  # nothing filtered
            [0.5 / 0.8, 0.3 / 0.8, 0, 0],  # top_k 2
            [0.5 / 0.8, 0.3 / 0.8, 0, 0],  # top_p 0.7: 0.5 < 0.7, 0.5 + 0.3 reaches it
            [0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0],  # top_p 0.85 needs the third
            sq / sq.sum(),  # temperature 2: p^(1/2), renormalised
            [0.5 / 0.8, 0.3 / 0.8, 0, 0],  # top_k 3 and top_p 0.7: the smaller set
            [1, 0, 0, 0]]  # top_k 1
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_draws_follow_the_distribution():
    n = 4000
    logits = jnp.log(jnp.asarray([PROBS] * n, jnp.float32))
    keys = jnp.asarray(np.stack([request_key(7, 0)] * n))
    ones = jnp.ones(n, jnp.float32)
    for top_k, top_p, want in ((0, 1.0, PROBS), (2, 1.0, [0.625, 0.375, 0, 0]), (0, 0.85, [0.5 / 0.95, 0.3 / 0.95,
                                                                                        0.15 / 0.95, 0])):
        tok = sample(logits, ones, jnp.full(n, top_k, jnp.int32), jnp.full(n, top_p, jnp.float32), keys,
                     jnp.arange(n, dtype=jnp.int32))  # one request, n token indices: n independent draws
        freq = np.bincount(np.asarray(tok), minlength=4) / n
        assert np.all(np.abs(freq - want) < 0.03), (top_k, top_p, freq)


def test_rows_are_independent_of_their_neighbours_and_position():
    rng = np.random.default_rng(0)
    logits = jnp.asarray(rng.normal(size=(6, 50)), jnp.float32)
    temp = jnp.asarray([0.0, 1.0, 0.7, 0.0, 1.3, 1.0], jnp.float32)
    top_k = jnp.asarray([0, 5, 0, 3, 0, 0], jnp.int32)
    top_p = jnp.asarray([1.0, 1.0, 0.9, 1.0, 0.5, 1.0], jnp.float32)
    keys = jnp.asarray(np.stack([request_key(s, 0) for s in range(6)]))
    index = jnp.asarray([0, 3, 1, 4, 9, 2], jnp.int32)
    tok = np.asarray(sample(logits, temp, top_k, top_p, keys, index))
    greedy = np.asarray(jnp.argmax(logits, -1))
    assert tok[0] == greedy[0] and tok[3] == greedy[3]  # greedy rows beside sampled ones
    perm = np.asarray([5, 2, 0, 4, 1, 3])
    again = np.asarray(sample(logits[perm], temp[perm], top_k[perm], top_p[perm], keys[perm], index[perm]))
    assert again.tolist() == tok[perm].tolist()
    for i in range(6):  # each row alone
        one = sample(logits[i:i + 1], temp[i:i + 1], top_k[i:i + 1], top_p[i:i + 1], keys[i:i + 1], index[i:i + 1])
        assert int(one[0]) == tok[i]


def test_request_keys_differ_by_seed_and_sample():
    keys = {tuple(request_key(s, i).tolist()) for s in range(3) for i in range(3)}
    assert len(keys) == 9 and request_key(1, 2).dtype == np.uint32


def test_stop_hit_matches_suffixes_only():
    hist = jnp.asarray([[-2, -2, 5, 6], [1, 2, 3, 4], [4, 3, 2, 1]], jnp.int32)
    stops = jnp.full((3, 2, 4), -1, jnp.int32)
    stops = stops.at[0, 0, 2:].set(jnp.asarray([5, 6])).at[1, 1, 1:].set(jnp.asarray([2, 3, 4]))
    stops = stops.at[2, 0, 3].set(2)  # 2 occurs, but not at the end
    assert np.asarray(stop_hit(hist, stops)).tolist() == [True, True, False]
    assert not np.asarray(stop_hit(hist, jnp.full((3, 2, 4), -1, jnp.int32))).any()
