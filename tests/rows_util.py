"""Segment-id rows for the attention tests (packed, padded left or right, ragged) and their self-attention mask."""
import jax.numpy as jnp
import numpy as np

from camel_jax.model.attention import attention_mask


def rows(layout, t):
    """[len(layout), t] segment ids: each row a list of segment lengths (a negative length is left padding)."""
    seg = np.zeros((len(layout), t), np.int32)
    for r, lengths in enumerate(layout):
        pos, sid = 0, 1
        for n in lengths:
            if n < 0:  # left padding
                pos += -n
                continue
            seg[r, pos:pos + n] = sid
            pos, sid = pos + n, sid + 1
    return seg


def positions(seg):
    """[B, T] positions counting from 0 within each segment (padding, segment 0, stays 0)."""
    pos = np.zeros_like(seg)
    for r in range(seg.shape[0]):
        for s in set(seg[r].tolist()) - {0}:
            idx = np.where(seg[r] == s)[0]
            pos[r, idx] = np.arange(len(idx))
    return pos


LAYOUTS = {
    "packed": [[30, 70, 150, 90, 172], [260, 40, 40, 40, 100, 32]],
    "one_segment": [[512], [512]],
    "right_padding": [[300], [45, 200]],
    "left_padding": [[-200, 312], [-5, 507]],
    "ragged_length": [[100, 200, 33], [333]],  # T = 333: the last block is padded inside, then cut off
}


def length(layout: str) -> int:
    return 333 if layout == "ragged_length" else 512


def self_mask(seg):
    t = seg.shape[1]
    slots = jnp.broadcast_to(jnp.arange(t)[None], seg.shape)
    return attention_mask(slots, jnp.asarray(seg), slots, jnp.asarray(seg))
