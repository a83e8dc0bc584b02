"""Position encodings: sinusoidal (absolute), RoPE and Self-Extend (rotary).

``from_name`` builds one from the names used in ``ModelConfig.position`` and on the command line.
"""

from .base import PositionEncoding
from .rope import PAIRINGS, RoPE, pairing_permutation
from .self_extend import SelfExtend, fit_group_size
from .sinusoidal import Sinusoidal

NAMES = ("sinusoidal", "rope", "self-extend")

__all__ = [
    "NAMES",
    "PAIRINGS",
    "PositionEncoding",
    "RoPE",
    "SelfExtend",
    "Sinusoidal",
    "check_position_name",
    "fit_group_size",
    "pairing_permutation",
]


def check_position_name(name) -> str:
    """Return ``name`` if it names a position encoding, or raise listing the valid names."""
    if name not in NAMES:
        raise ValueError(
            f"Unknown position encoding {name!r}. Valid names are {', '.join(NAMES)}."
        )
    return name
