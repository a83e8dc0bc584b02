"""minitx: a from-scratch transformer in NumPy for learning how position is encoded.

The public names most lessons need are importable from here: ``attend``,
``attention_weights``, ``ModelConfig``, ``TransformerLM``, ``generate``, ``load_pretrained``
(the shipped checkpoints by name) and the ``positions`` subpackage (``Sinusoidal``, ``RoPE``,
``SelfExtend``). ``warmup()`` compiles the attention kernels ahead of use, and
``set_num_threads(n)`` sets how many threads they and BLAS use.
"""

from . import positions
from .attention import attend, attention_weights
from .config import ModelConfig
from .generate import generate
from .model import TransformerLM
from .positions import RoPE, SelfExtend, Sinusoidal
from .recipes import load_pretrained
from .threads import get_num_threads, set_num_threads
from .warmup import warmup

__version__ = "0.1.0"

__all__ = [
    "ModelConfig",
    "RoPE",
    "SelfExtend",
    "Sinusoidal",
    "TransformerLM",
    "attend",
    "attention_weights",
    "generate",
    "get_num_threads",
    "load_pretrained",
    "positions",
    "set_num_threads",
    "warmup",
]
