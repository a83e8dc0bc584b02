"""Text corpora, tokenizers and training batches.

The default corpus is the Python language reference topics that ship with every CPython
(``pydoc_data.topics``): about 465,000 characters of real English prose and code, present on
any machine with Python, so training never downloads anything. ``load_text`` reads any UTF-8
file instead.

Two tokenizers: ``CharTokenizer`` (one id per distinct character of the training text) and
``ByteTokenizer`` (one id per UTF-8 byte, 256 ids, never an unknown symbol).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ._checks import check_int

VALIDATION_FRACTION = 0.1


def load_default_corpus() -> str:
    """Return the CPython language reference topics as one string, topics in sorted order."""
    from pydoc_data.topics import topics

    return "".join(topics[name] for name in sorted(topics))


def load_text(path) -> str:
    """Return the text of a UTF-8 file, or raise naming the file and the problem."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"Data file {str(path)!r} is a directory. Pass the path of a UTF-8 text file.")
    if not path.is_file():
        raise FileNotFoundError(f"Data file {str(path)!r} not found. Pass the path of a UTF-8 text file.")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(
            f"Data file {str(path)!r} is not valid UTF-8 (byte {error.start}: {raw[error.start:error.start + 1]!r}). "
            "Convert it to UTF-8 first, for example with iconv -f LATIN1 -t UTF-8 for Latin-1 text."
        ) from None
    if not text:
        raise ValueError(f"Data file {str(path)!r} is empty. Training needs text.")
    return text



def _check_ids(ids, vocab_size: int) -> np.ndarray:
    """Return ``ids`` as a 1-D int64 array, or raise naming the id outside 0 .. vocab_size - 1."""
    array = np.asarray(ids)
    if array.ndim != 1 or not (array.size == 0 or np.issubdtype(array.dtype, np.integer)):
        raise TypeError(f"ids must be a 1-D sequence of integer token ids, got {ids!r:.80}.")
    bad = array[(array < 0) | (array >= vocab_size)]
    if bad.size:
        raise ValueError(
            f"Token id {int(bad[0])} is outside this tokenizer's ids 0 .. {vocab_size - 1}. "
            "Decode only ids that came from this tokenizer or from a model trained with it."
        )
    return array.astype(np.int64)

class CharTokenizer:
    """One id per distinct character, ids in sorted character order."""

    kind = "char"

    def __init__(self, chars):
        chars = list(chars)
        if not chars:
            raise ValueError("CharTokenizer needs at least one character.")
        if len(set(chars)) != len(chars):
            raise ValueError("CharTokenizer characters must be distinct.")
        self.chars = chars
        self.ids = {ch: i for i, ch in enumerate(chars)}

    @classmethod
    def from_text(cls, text: str) -> "CharTokenizer":
        return cls(sorted(set(text)))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        """Return the (T,) int64 ids of ``text``; raises on characters outside the vocabulary."""
        unknown = sorted(set(text) - self.ids.keys())
        if unknown:
            listed = "".join(unknown[:20])
            raise ValueError(
                f"{len(unknown)} character(s) are not in the tokenizer's vocabulary: {listed!r}. "
                "Use only characters of the training text, or train with --tokenizer byte."
            )
        return np.array([self.ids[ch] for ch in text], dtype=np.int64)

    def decode(self, ids) -> str:
        """Return the text of ``ids``; raises on an id outside 0 .. vocab_size - 1."""
        ids = _check_ids(ids, self.vocab_size)
        return "".join(self.chars[i] for i in ids.tolist())

    def to_json(self) -> str:
        return json.dumps({"kind": self.kind, "chars": "".join(self.chars)})


class ByteTokenizer:
    """One id per UTF-8 byte (256 ids). Decoding replaces broken multi-byte sequences."""

    kind = "byte"
    vocab_size = 256

    def encode(self, text: str) -> np.ndarray:
        return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int64)

    def decode(self, ids) -> str:
        """Return the text of ``ids``; raises on an id outside 0 .. 255."""
        ids = _check_ids(ids, self.vocab_size)
        return bytes(ids.tolist()).decode("utf-8", errors="replace")

    def to_json(self) -> str:
        return json.dumps({"kind": self.kind})


TOKENIZERS = ("char", "byte")


def build_tokenizer(kind: str, text: str):
    """Return a tokenizer of ``kind`` ("char" or "byte") for ``text``."""
    if kind == "char":
        return CharTokenizer.from_text(text)
    if kind == "byte":
        return ByteTokenizer()
    raise ValueError(f"tokenizer must be one of {TOKENIZERS}, got {kind!r}.")


def tokenizer_from_json(text: str):
    fields = json.loads(text)
    if fields.get("kind") == "char":
        return CharTokenizer(fields["chars"])
    if fields.get("kind") == "byte":
        return ByteTokenizer()
    raise ValueError(f"Unknown tokenizer kind {fields.get('kind')!r}.")


def split_train_val(tokens: np.ndarray, val_fraction: float = VALIDATION_FRACTION):
    """Return (train, val): the first 1 - val_fraction of the tokens, and the rest.

    The split is a fixed cut, not a random one, so the validation text is the same held-out
    passage in every run.
    """
    cut = int(len(tokens) * (1 - val_fraction))
    return tokens[:cut], tokens[cut:]


def get_batch(tokens: np.ndarray, batch_size: int, T: int, rng: np.random.Generator):
    """Return (inputs, targets), each (batch_size, T): random windows and the same shifted by one."""
    batch_size = check_int("batch_size", batch_size, minimum=1)
    T = check_int("T", T, minimum=1)
    if len(tokens) < T + 1:
        raise ValueError(
            f"The text has {len(tokens)} tokens, fewer than context_length + 1 = {T + 1}. "
            "Use a longer text or a shorter context_length."
        )
    starts = rng.integers(0, len(tokens) - T, size=batch_size)
    index = starts[:, None] + np.arange(T)[None, :]  # (batch_size, T)
    return tokens[index], tokens[index + 1]
