"""Self-Extend (Jin et al. 2024, "LLM Maybe LongLM: Self-Extend LLM Context Window Without
Tuning", arXiv 2401.01325, ICML 2024, section 3).

A RoPE model trained at context length L has never seen a relative position >= L. Self-Extend
runs it on longer inputs without training by computing two scores for every query i and key j:

- neighbour: q rotated at i, k rotated at j (plain RoPE), used where 0 <= i - j < W;
- grouped: q rotated at i // G + (W - W // G), k rotated at j // G, used where i - j >= W.

The effective relative position is therefore

    d(i, j) = i - j                              if i - j < W
    d(i, j) = (i // G + W - W // G) - j // G     otherwise

The causal mask is applied to the merged logits, then ONE softmax per row follows; it is not an
average of two softmaxes. The shift uses integer division, so it is exact when G does not
divide W, and decoding one token after a prefill gives the logits of a full forward.

G = 1 is plain RoPE, and so is any input with T <= W.

Not done here: llama.cpp's ``--grp-attn-n/--grp-attn-w``, which compacts cached key positions
in blocks and is a different approximation.
"""

from __future__ import annotations

import numpy as np

from .._checks import check_int, check_positions
from .base import PositionEncoding
from .rope import RoPE


def fit_group_size(trained_length: int, length: int, window: int) -> int:
    """Return the smallest group size G with which inputs of ``length`` stay below L.

    The condition is G * (L - W + W // G) >= length, which needs W < L.
    """
    L = check_int("trained_length", trained_length, minimum=1)
    length = check_int("length", length, minimum=1)
    window = check_int("window", window, minimum=1)
    if length <= L:
        return 1
    if window >= L:
        raise ValueError(
            f"window={window} must be below the training length {L} for Self-Extend to reach "
            f"{length} tokens: the neighbour window alone would use every trained position."
        )
    group_size = 1
    while group_size * (L - window + window // group_size) < length:
        group_size += 1
    return group_size


class SelfExtend(PositionEncoding):
    """RoPE with grouped positions beyond a neighbour window: ``group_size`` G, ``window`` W."""

    kind = "rotary"
    name = "self-extend"

    def __init__(
        self,
        head_dim: int,
        group_size: int,
        window: int,
        base: float = 10000.0,
        pairing: str = "interleaved",
    ):
        self.rope = RoPE(head_dim, base=base, pairing=pairing)
        self.group_size = check_int("group_size", group_size, minimum=1)
        self.window = check_int("window", window, minimum=1)

    @property
    def head_dim(self) -> int:
        return self.rope.head_dim

    @property
    def shift(self) -> int:
        """The integer W - W // G added to grouped query positions."""
        return self.window - self.window // self.group_size

    def query_far_positions(self, positions) -> np.ndarray:
        """Return i // G + (W - W // G) for query positions i."""
        return check_positions("positions", positions) // self.group_size + self.shift

    def key_far_positions(self, positions) -> np.ndarray:
        """Return j // G for key positions j."""
        return check_positions("positions", positions) // self.group_size

    def relative_positions(self, T: int) -> np.ndarray:
        """Return the (T, T) int64 matrix of effective relative positions d(i, j).

        Row i is the query, column j the key. Entries with j > i are masked by causality and
        hold -1, a value no real relative position takes.
        """
        T = check_int("T", T, minimum=1)
        i = np.arange(T)[:, None]  # (T, 1) query positions
        j = np.arange(T)[None, :]  # (1, T) key positions
        near = i - j
        far = self.query_far_positions(np.arange(T))[:, None] - self.key_far_positions(np.arange(T))[None, :]
        d = np.where(near < self.window, near, far)
        return np.where(j <= i, d, -1)

    def max_length(self, trained_length: int) -> int:
        """Return the longest N whose effective relative positions all stay below L.

        N <= G * (L - W + W // G) when W < L, which is (L - W) * G + W when G divides W.
        With W >= L the neighbour window alone reaches L, so N <= L. ``fit_group_size`` gives
        the smallest G for a wanted N.
        """
        L = check_int("trained_length", trained_length, minimum=1)
        if self.window >= L:
            return L
        return self.group_size * (L - self.window + self.window // self.group_size)

    def rotate_queries(self, q, positions):
        positions = check_positions("positions", positions)
        near = self.rope.rotate(q, positions)
        far = self.rope.rotate(q, self.query_far_positions(positions))
        return near, far

    def rotate_keys(self, k, positions):
        positions = check_positions("positions", positions)
        near = self.rope.rotate(k, positions)
        far = self.rope.rotate(k, self.key_far_positions(positions))
        return near, far

    def unrotate(self, d_near, d_far, positions, *, queries: bool):
        positions = check_positions("positions", positions)
        far_positions = self.query_far_positions(positions) if queries else self.key_far_positions(positions)
        grad = self.rope.rotate(d_near, positions, inverse=True)
        if d_far is not None:
            grad = grad + self.rope.rotate(d_far, far_positions, inverse=True)
        return grad

    def config(self) -> dict:
        return {
            "head_dim": self.head_dim,
            "group_size": self.group_size,
            "window": self.window,
            "base": self.rope.base,
            "pairing": self.rope.pairing,
        }
