"""Checkpoints: one ``.npz`` file with weights, config, tokenizer and optional training state.

The file holds only plain arrays, so it loads with ``allow_pickle=False``: opening a checkpoint
never runs code. Text (config, tokenizer, training metadata) is stored as 0-d unicode arrays
holding JSON. A SHA-256 digest of every other array is stored too and checked on load, so a
truncated or edited file is rejected instead of giving a silently different model.

Writes go to a temporary file in the target folder that is renamed over the target only when
complete, so an interrupted save never leaves a half-written checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from .config import ModelConfig
from .data import tokenizer_from_json
from .model import TransformerLM

FORMAT = "minitx-checkpoint-1"


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable, incomplete or altered."""


def _digest(arrays: dict[str, np.ndarray]) -> str:
    sha = hashlib.sha256()
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        sha.update(f"{name}|{array.dtype.str}|{array.shape}|".encode())
        sha.update(array.tobytes())
    return sha.hexdigest()


def atomic_write(path, write) -> Path:
    """Call ``write(file_object)`` on a temporary file beside ``path``, then rename it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_checkpoint(path, model: TransformerLM, tokenizer, optimizer=None, meta: dict | None = None) -> Path:
    """Write ``model`` (and optionally the AdamW state and JSON ``meta``) to ``path`` atomically."""
    arrays = {f"param.{name}": array for name, array in model.named_parameters()}
    if optimizer is not None:
        arrays.update({f"optim.{name}": array for name, array in optimizer.state().items()})
    arrays["config"] = np.array(model.config.to_json())
    arrays["tokenizer"] = np.array(tokenizer.to_json())
    arrays["meta"] = np.array(json.dumps(meta or {}))
    arrays["format"] = np.array(FORMAT)
    arrays["digest"] = np.array(_digest(arrays))
    return atomic_write(path, lambda handle: np.savez(handle, **arrays))


def read_checkpoint(path) -> dict[str, np.ndarray]:
    """Return every array of the checkpoint at ``path`` after checking its format and digest."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"Checkpoint {str(path)!r} not found. Train one with `minitx train --out DIR`, "
            "which writes DIR/model.npz."
        )
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as error:
        raise CheckpointError(
            f"Checkpoint {str(path)!r} could not be read ({type(error).__name__}: {error}). "
            "It is truncated or not a minitx checkpoint; save it again."
        ) from None

    missing = [name for name in ("format", "digest", "config", "tokenizer", "meta") if name not in arrays]
    if missing or str(arrays["format"]) != FORMAT:
        raise CheckpointError(
            f"{str(path)!r} is not a {FORMAT} file (missing {missing or 'nothing'}, format "
            f"{str(arrays.get('format', 'absent'))!r}). Save it with minitx.checkpoint.save_checkpoint."
        )
    stored = str(arrays.pop("digest"))
    if _digest(arrays) != stored:
        raise CheckpointError(
            f"Checkpoint {str(path)!r} failed its SHA-256 check: its contents changed after it "
            "was written. Use an unaltered copy or train again."
        )
    return arrays


def load_checkpoint(path):
    """Return (model, tokenizer, optimizer_state, meta) from a checkpoint file.

    ``optimizer_state`` is a dict for ``AdamW.load_state``, empty when none was saved.
    """
    arrays = read_checkpoint(path)
    config = ModelConfig.from_json(str(arrays["config"]))
    tokenizer = tokenizer_from_json(str(arrays["tokenizer"]))
    meta = json.loads(str(arrays["meta"]))

    model = TransformerLM(config)
    params = {name[len("param."):]: a for name, a in arrays.items() if name.startswith("param.")}
    try:
        model.load_parameters(params)
    except ValueError as error:
        raise CheckpointError(f"Checkpoint {str(path)!r} does not match its own config: {error}") from None
    optimizer_state = {name[len("optim."):]: a for name, a in arrays.items() if name.startswith("optim.")}
    return model, tokenizer, optimizer_state, meta
