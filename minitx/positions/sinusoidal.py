"""Sinusoidal absolute positions (Vaswani et al. 2017, "Attention Is All You Need", section 3.5).

    PE[p, 2m]     = sin(p / base^(2m / dim))
    PE[p, 2m + 1] = cos(p / base^(2m / dim))

Columns 2m and 2m + 1 share one frequency, so PE(p) . PE(q) = sum_m cos((p - q) * w_m) depends
only on p - q. The table is added to the token embeddings once, at the input. An odd ``dim`` is
supported: its last column is a sine with no cosine partner.

Not done here: learned absolute positions, and any remedy for inputs longer than the training
length (a sinusoidal model is expected to degrade there; that is the point of the comparison).
"""

from __future__ import annotations

import numpy as np

from .._checks import check_int, check_positions, check_positive_float
from .base import PositionEncoding


class Sinusoidal(PositionEncoding):
    """Fixed sine/cosine table added to the embeddings; ``dim`` is the embedding width C."""

    kind = "absolute"
    name = "sinusoidal"

    def __init__(self, dim: int, base: float = 10000.0):
        self.dim = check_int("dim", dim, minimum=1)
        self.base = check_positive_float("base", base)

    def frequencies(self) -> np.ndarray:
        """Return the (ceil(dim / 2),) float64 angular frequencies w_m = base^(-2m / dim)."""
        m = np.arange((self.dim + 1) // 2, dtype=np.float64)
        return self.base ** (-2.0 * m / self.dim)

    def table(self, positions) -> np.ndarray:
        """Return the (T, dim) float64 table for integer ``positions`` of shape (T,)."""
        positions = check_positions("positions", positions)
        angles = positions.astype(np.float64)[:, None] * self.frequencies()[None, :]  # (T, dim/2)
        table = np.empty((positions.shape[0], self.dim), dtype=np.float64)
        table[:, 0::2] = np.sin(angles)
        table[:, 1::2] = np.cos(angles[:, : self.dim // 2])
        return table

    def config(self) -> dict:
        return {"dim": self.dim, "base": self.base}
