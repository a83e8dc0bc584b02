"""ModelConfig: the architecture of a TransformerLM, validated on construction.

Every field is a plain number or string, so a config is stored in a checkpoint as JSON.
"""

from __future__ import annotations

import dataclasses
import json

from ._checks import check_int, check_positive_float
from .layers import NORMS
from .positions import PAIRINGS, RoPE, SelfExtend, Sinusoidal, check_position_name

DTYPES = ("float32", "float64")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Architecture of a decoder-only transformer.

    ``context_length`` is the training length L. The model rejects longer inputs unless it is
    called with ``extrapolate=True``, or unless its position encoding (Self-Extend) maps them
    inside L.
    ``position`` is "sinusoidal", "rope" or "self-extend"; ``base`` and ``pairing`` apply to
    the rotary ones, ``group_size`` and ``window`` to Self-Extend.
    """

    vocab_size: int
    context_length: int
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    position: str = "rope"
    base: float = 10000.0
    pairing: str = "interleaved"
    group_size: int = 1
    window: int = 1
    norm: str = "layernorm"
    dtype: str = "float32"

    def __post_init__(self):
        # Store plain ints and floats, so NumPy scalars never reach the JSON of a checkpoint.
        for name in ("vocab_size", "context_length", "n_layer", "n_head", "n_embd", "group_size", "window"):
            object.__setattr__(self, name, check_int(name, getattr(self, name), minimum=1))
        object.__setattr__(self, "base", check_positive_float("base", self.base))
        for name in ("position", "pairing", "norm", "dtype"):
            if not isinstance(getattr(self, name), str):
                raise TypeError(f"{name} must be a string, got {getattr(self, name)!r}.")
        if self.n_embd % self.n_head:
            raise ValueError(
                f"n_embd={self.n_embd} is not divisible by n_head={self.n_head}; each head gets "
                "n_embd // n_head channels. Choose n_embd as a multiple of n_head."
            )
        check_position_name(self.position)
        if self.pairing not in PAIRINGS:
            raise ValueError(f"pairing must be one of {PAIRINGS}, got {self.pairing!r}.")
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {tuple(NORMS)}, got {self.norm!r}.")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {self.dtype!r}.")
        self.build_position()  # raises for an odd head_dim with a rotary encoding

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    def build_position(self):
        """Return the position encoding this config names."""
        if self.position == "sinusoidal":
            return Sinusoidal(self.n_embd, base=self.base)
        if self.position == "rope":
            return RoPE(self.head_dim, base=self.base, pairing=self.pairing)
        return SelfExtend(
            self.head_dim, self.group_size, self.window, base=self.base, pairing=self.pairing
        )

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ModelConfig":
        fields = json.loads(text)
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(fields) - known)
        if unknown:
            raise ValueError(f"Unknown ModelConfig fields {unknown}; the file was written by another version.")
        return cls(**fields)
