"""The interface every position encoding implements.

A transformer learns nothing about order unless position is put in somewhere. minitx has two
places for it, and each encoding says which one it uses through ``kind``:

- ``"absolute"``: a (T, C) table is added to the token embeddings once, at the input
  (sinusoidal, Vaswani et al. 2017). Attention itself never sees positions.
- ``"rotary"``: queries and keys are rotated inside every attention layer (RoPE, Su et al. 2021;
  Self-Extend, Jin et al. 2024). Nothing is added at the input.

A rotary encoding may use two rotations per query and key: the "near" copies rotated at the
true positions and the "far" copies rotated at remapped positions. The score for query i and
key j uses the near copies when ``i - j < window`` and the far copies otherwise. Plain RoPE has
``window = None``: near copies everywhere, far copies absent.
"""

from __future__ import annotations

import numpy as np

from .._checks import check_int


class PositionEncoding:
    """Base class: a named position scheme that the model and ``minitx.attend`` both accept."""

    #: "absolute" (added to the embeddings) or "rotary" (applied to q and k in attention).
    kind: str = ""
    #: Registry name, as used by ``ModelConfig.position`` and the command line.
    name: str = ""
    #: Neighbour window for schemes with two rotations; None when one rotation is used everywhere.
    window: int | None = None

    def max_length(self, trained_length: int) -> int:
        """Return the longest input whose relative positions all stay below ``trained_length``."""
        return check_int("trained_length", trained_length, minimum=1)

    # Absolute encodings implement this one.
    def table(self, positions) -> np.ndarray:
        """Return the (T, dim) float64 table to add to the embeddings at ``positions``."""
        raise NotImplementedError(f"{type(self).__name__} is {self.kind}, it has no input table.")

    # Rotary encodings implement these three.
    def rotate_queries(self, q: np.ndarray, positions) -> tuple[np.ndarray, np.ndarray | None]:
        """Return (q_near, q_far) for q (..., T, head_dim); q_far is None without a window."""
        raise NotImplementedError(f"{type(self).__name__} is {self.kind}, it does not rotate q.")

    def rotate_keys(self, k: np.ndarray, positions) -> tuple[np.ndarray, np.ndarray | None]:
        """Return (k_near, k_far) for k (..., T, head_dim); k_far is None without a window."""
        raise NotImplementedError(f"{type(self).__name__} is {self.kind}, it does not rotate k.")

    def unrotate(self, d_near: np.ndarray, d_far: np.ndarray | None, positions, *, queries: bool):
        """Return the gradient with respect to the unrotated input (the backward of rotation).

        A rotation is orthogonal, so its backward is the rotation by the negative angle.
        """
        raise NotImplementedError(f"{type(self).__name__} is {self.kind}, it does not rotate.")

    def config(self) -> dict:
        """Return the constructor arguments, so the encoding can be stored in a checkpoint."""
        raise NotImplementedError

    def __eq__(self, other) -> bool:
        return type(self) is type(other) and self.config() == other.config()

    def __hash__(self) -> int:
        return hash((type(self).__name__, tuple(sorted(self.config().items()))))

    def __repr__(self) -> str:
        args = ", ".join(f"{key}={value!r}" for key, value in self.config().items())
        return f"{type(self).__name__}({args})"
