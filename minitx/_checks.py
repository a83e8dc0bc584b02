"""Input checks shared by the public functions.

Every public entry point validates its arguments here, in Python, before any compiled kernel
runs. A bad call then fails with a message that names the value, the rule and the fix, instead
of a Numba typing error or a silent NaN.
"""

from __future__ import annotations

import numbers

import numpy as np

FLOAT_DTYPES = (np.float32, np.float64)


def check_int(name: str, value, minimum: int | None = None) -> int:
    """Return ``value`` as a Python int, or raise if it is not an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r} of type {type(value).__name__}.")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}.")
    return value


def check_bool(name: str, value) -> bool:
    """Return ``value`` as a bool, or raise if it is not True or False (a NumPy bool counts)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r} of type {type(value).__name__}.")
    return bool(value)


def check_positive_float(name: str, value) -> float:
    """Return ``value`` as a float, or raise if it is not a finite number > 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r} of type {type(value).__name__}.")
    value = float(value)
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value}.")
    return value


def check_finite_float(name: str, value, minimum: float | None = None) -> float:
    """Return ``value`` as a float, or raise if it is not a finite number >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r} of type {type(value).__name__}.")
    value = float(value)
    if not np.isfinite(value) or (minimum is not None and value < minimum):
        rule = "a finite number" + (f" >= {minimum}" if minimum is not None else "")
        raise ValueError(f"{name} must be {rule}, got {value}.")
    return value


def check_float_array(name: str, x, ndim: int | None = None) -> np.ndarray:
    """Return ``x`` as a float32 or float64 array, or raise with the reason and the fix.

    Integer, boolean, complex and object arrays are rejected rather than cast, because a silent
    cast hides a bug at the call site. Non-finite values are rejected because they would turn the
    whole softmax row into NaN.
    """
    if not isinstance(x, np.ndarray):
        raise TypeError(
            f"{name} must be a NumPy array, got {type(x).__name__}. Convert it with np.asarray(...)."
        )
    if isinstance(x, np.ma.MaskedArray):
        raise TypeError(
            f"{name} is a masked array; attention would ignore its mask. Pass a plain array, "
            f"for example {name}.filled(0.0), and express masking through causal=True."
        )
    if x.dtype.kind == "f" and x.dtype.itemsize in (4, 8) and not x.dtype.isnative:
        raise TypeError(
            f"{name} has non-native byte order ({x.dtype.str}). Convert it with {name}.astype({name}.dtype.newbyteorder('='))."
        )
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(
            f"{name} has dtype {x.dtype}, but only float32 and float64 are supported. "
            f"Cast it first, for example {name}.astype(np.float32)."
        )
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {x.shape}.")
    finite = np.isfinite(np.asarray(x))
    if not finite.all():
        bad = int(np.size(x) - np.count_nonzero(finite))
        raise ValueError(
            f"{name} contains {bad} non-finite value(s) (NaN or inf). "
            "Check the values that produced it; attention cannot give a finite result from them."
        )
    return x


def check_tokens(name: str, tokens, vocab_size: int | None = None) -> np.ndarray:
    """Return ``tokens`` as a 2-D int64 array (B, T), or raise with the reason and the fix."""
    if not isinstance(tokens, np.ndarray):
        raise TypeError(
            f"{name} must be a NumPy integer array of shape (B, T), got {type(tokens).__name__}."
        )
    if not np.issubdtype(tokens.dtype, np.integer):
        raise TypeError(
            f"{name} must hold integer token ids, got dtype {tokens.dtype}. "
            "Encode text with a tokenizer, for example CharTokenizer.encode(text)."
        )
    if tokens.ndim != 2:
        raise ValueError(
            f"{name} must have shape (B, T), got shape {tokens.shape}. "
            "For a single sequence use tokens[None, :]."
        )
    if tokens.shape[1] == 0:
        raise ValueError(f"{name} must hold at least one token per row, got shape {tokens.shape}.")
    if vocab_size is not None and tokens.size:
        low, high = int(tokens.min()), int(tokens.max())
        if low < 0 or high >= vocab_size:
            raise ValueError(
                f"{name} contains token ids in [{low}, {high}], but the vocabulary has ids "
                f"0..{vocab_size - 1}. Encode the text with the tokenizer the model was built with."
            )
    return tokens.astype(np.int64, copy=False)


def check_positions(name: str, positions, length: int | None = None) -> np.ndarray:
    """Return ``positions`` as a 1-D int64 array of non-negative integers."""
    positions = np.asarray(positions)
    if positions.dtype.kind not in "iu":
        raise TypeError(
            f"{name} must hold integer token positions, got dtype {positions.dtype}. "
            "Use np.arange(T) for positions 0..T-1."
        )
    if positions.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {positions.shape}.")
    if positions.size and int(positions.min()) < 0:
        raise ValueError(f"{name} must be >= 0, got minimum {int(positions.min())}.")
    if positions.size and int(positions.max()) > 2**53:
        raise ValueError(
            f"{name} must be <= 2**53, got {int(positions.max())}: larger integers are not exact "
            "in the float64 angle computation."
        )
    if length is not None and positions.shape[0] != length:
        raise ValueError(
            f"{name} has {positions.shape[0]} entries, but the input has {length} positions "
            "along its T axis. Pass one position per token."
        )
    return positions.astype(np.int64, copy=False)
