"""Attention: the NumPy reference, the compiled kernels and the public functions."""

from .api import BACKENDS, attend, attention_weights

__all__ = ["BACKENDS", "attend", "attention_weights"]
