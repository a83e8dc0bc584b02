"""Rotary position embedding, RoPE (Su et al. 2021, "RoFormer", arXiv 2104.09864, eq. 34).

The channels of a head are split into head_dim / 2 pairs (x_a, x_b). At position p the pair
with index m is rotated by the angle p * theta_m, with theta_m = base^(-2m / head_dim):

    (x_a, x_b) -> (x_a cos(p theta_m) - x_b sin(p theta_m),  x_a sin(p theta_m) + x_b cos(p theta_m))

Rotating q at i and k at j makes the score q_i . k_j a function of i - j alone, and leaves
every vector's norm unchanged. Two ways of choosing the pairs are in use, and both are named:

- ``pairing="interleaved"``: pairs (2m, 2m + 1), as in the RoFormer paper, GPT-J and the
  original LLaMA code.
- ``pairing="half"``: pairs (m, m + head_dim / 2), as in GPT-NeoX and Hugging Face's
  ``rotate_half``.

They are the same rotation up to a fixed channel permutation (see ``pairing_permutation``).
Angles are computed in float64: positions above 256 are not exact in bfloat16 and above 2048
not in float16, which is a known source of long-context drift.

Not done here: partial rotary dimensions and frequency scaling schemes (NTK, YaRN).
"""

from __future__ import annotations

import numpy as np

from .._checks import check_int, check_positions, check_positive_float
from .base import PositionEncoding

PAIRINGS = ("interleaved", "half")
COMPLEX = {np.dtype(np.float32): np.dtype(np.complex64), np.dtype(np.float64): np.dtype(np.complex128)}


def pairing_permutation(head_dim: int) -> np.ndarray:
    """Return perm = [0, 2, 4, ..., 1, 3, 5, ...] for an even ``head_dim``.

    With it, ``RoPE(pairing="half").rotate(x[..., perm]) == RoPE(pairing="interleaved")
    .rotate(x)[..., perm]``. To convert trained weights from one pairing to the other, permute
    the query and key output channels of each head this way; values and the output projection
    are left alone.
    """
    head_dim = check_int("head_dim", head_dim, minimum=2)
    if head_dim % 2:
        raise ValueError(f"head_dim must be even, got {head_dim}.")
    return np.concatenate([np.arange(0, head_dim, 2), np.arange(1, head_dim, 2)])


class RoPE(PositionEncoding):
    """Rotary position embedding for heads of width ``head_dim`` (even)."""

    kind = "rotary"
    name = "rope"
    window = None
    MAX_TABLES = 8

    def __init__(self, head_dim: int, base: float = 10000.0, pairing: str = "interleaved"):
        head_dim = check_int("head_dim", head_dim, minimum=2)
        if head_dim % 2:
            raise ValueError(
                f"RoPE rotates channels in pairs, so head_dim must be even, got {head_dim}. "
                "Choose n_embd and n_head so that n_embd // n_head is even."
            )
        if pairing not in PAIRINGS:
            raise ValueError(
                f"pairing must be one of {PAIRINGS}, got {pairing!r}. "
                "'interleaved' pairs channels (2m, 2m+1); 'half' pairs (m, m + head_dim/2)."
            )
        self.head_dim = head_dim
        self.base = check_positive_float("base", base)
        self.pairing = pairing
        self._tables: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}

    def frequencies(self) -> np.ndarray:
        """Return the (head_dim / 2,) float64 frequencies theta_m = base^(-2m / head_dim)."""
        m = np.arange(self.head_dim // 2, dtype=np.float64)
        return self.base ** (-2.0 * m / self.head_dim)

    def angles(self, positions) -> np.ndarray:
        """Return the (T, head_dim / 2) float64 rotation angles p * theta_m."""
        positions = check_positions("positions", positions)
        return positions.astype(np.float64)[:, None] * self.frequencies()[None, :]

    def rotation_tables(self, positions: np.ndarray, dtype) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return read-only (T, head_dim / 2) tables cos, sin and cos + i sin of the angles.

        cos and sin have the float ``dtype``, the third table the complex dtype of the same
        precision. A training step rotates q and k of every layer at the same positions,
        forward and backward, so the tables are computed once and kept. At most
        ``MAX_TABLES`` sets are kept (Self-Extend uses two or three position sets per step).
        """
        key = (positions.tobytes(), np.dtype(dtype).str, float(self.base), int(self.head_dim))  # base can be reassigned
        if key not in self._tables:
            if len(self._tables) >= self.MAX_TABLES:
                self._tables.clear()
            angles = self.angles(positions)
            cos, sin = np.cos(angles), np.sin(angles)
            rotation = (cos + 1j * sin).astype(COMPLEX[np.dtype(dtype)])  # e^(i angle)
            tables = (cos.astype(dtype), sin.astype(dtype), rotation)
            for table in tables:
                table.flags.writeable = False
            self._tables[key] = tables
        return self._tables[key]

    def rotate(self, x: np.ndarray, positions, inverse: bool = False) -> np.ndarray:
        """Rotate x (..., T, head_dim) at integer ``positions`` (T,); ``inverse`` undoes it.

        The result has x's dtype. The inverse rotation is also the backward pass, because a
        rotation matrix is orthogonal: its transpose is its inverse.
        """
        x = np.asarray(x)
        if x.dtype not in (np.float32, np.float64):
            raise TypeError(f"x must be float32 or float64, got dtype {x.dtype}.")
        if x.ndim < 2 or x.shape[-1] != self.head_dim:
            raise ValueError(
                f"x must have shape (..., T, head_dim={self.head_dim}), got {x.shape}. "
                "Split the heads first: (B, T, C) -> (B, NH, T, hs)."
            )
        positions = check_positions("positions", positions, length=x.shape[-2])

        cos, sin, rotation = self.rotation_tables(positions, x.dtype)  # (T, hs/2) each
        if inverse:
            sin, rotation = -sin, rotation.conj()

        # out is contiguous (B, NH, T, hs) even when x is a strided view of the qkv projection,
        # so the attention kernels can use it without another copy.
        out = np.empty(x.shape, dtype=x.dtype)

        if self.pairing == "interleaved" and x.strides[-1] == x.itemsize:
            # The pair (x_a, x_b) is the complex number x_a + i x_b, and rotating it by the
            # angle a is multiplying it by cos a + i sin a: one pass over x instead of six.
            pairs = x.view(COMPLEX[x.dtype])  # (..., T, hs) -> (..., T, hs/2) complex
            np.multiply(pairs, rotation, out=out.view(COMPLEX[x.dtype]))
            return out

        # The same rotation on real pairs, for the half pairing and for an x with a strided last axis.
        if self.pairing == "interleaved":
            x_a, x_b = x[..., 0::2], x[..., 1::2]  # (..., T, hs/2) each
            out_a, out_b = out[..., 0::2], out[..., 1::2]
        else:
            half = self.head_dim // 2
            x_a, x_b = x[..., :half], x[..., half:]
            out_a, out_b = out[..., :half], out[..., half:]

        # out_a = x_a cos - x_b sin,  out_b = x_a sin + x_b cos, written into out's halves
        np.multiply(x_a, cos, out=out_a)
        out_a -= x_b * sin
        np.multiply(x_a, sin, out=out_b)
        out_b += x_b * cos
        return out

    def rotate_queries(self, q, positions):
        return self.rotate(q, positions), None

    def rotate_keys(self, k, positions):
        return self.rotate(k, positions), None

    def unrotate(self, d_near, d_far, positions, *, queries: bool):
        return self.rotate(d_near, positions, inverse=True)

    def config(self) -> dict:
        return {"head_dim": self.head_dim, "base": self.base, "pairing": self.pairing}
