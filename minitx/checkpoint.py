"""Checkpoints: one ``.npz`` file with weights, config, tokenizer and optional training state.

The file holds only plain arrays, so it loads with ``allow_pickle=False``: opening a checkpoint
never runs code. Text (config, tokenizer, training metadata) is stored as 0-d unicode arrays
holding JSON. A SHA-256 digest of every other array is stored too and checked on load, so a
truncated or edited file is rejected instead of giving a silently different model.

Writes go through ``atomic_write``, so an interrupted save never leaves a half-written
checkpoint and a failed save keeps the previous one.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import numpy as np

from ._files import atomic_write
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
    if path.is_dir():
        found = sorted(p.name for p in path.glob("*.npz"))
        raise CheckpointError(
            f"Checkpoint {str(path)!r} is a directory. Pass one of the .npz files inside it: "
            f"{', '.join(found) if found else 'it contains none'}."
        )
    if not path.is_file():
        raise CheckpointError(
            f"Checkpoint {str(path)!r} not found. Train one with `minitx train --out DIR`, "
            "which writes DIR/model.npz (minitx demo writes rope.npz and sinusoidal.npz)."
        )
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise ValueError("it contains a single array, not an .npz archive")
        with archive:
            arrays = {name: archive[name] for name in archive.files}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as error:
        reason = "it contains Python objects" if "pickle" in str(error) else f"{type(error).__name__}: {error}"
        raise CheckpointError(
            f"Checkpoint {str(path)!r} could not be read ({reason}). It is truncated, or not "
            "a minitx checkpoint; write it again with minitx train or save_checkpoint."
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
    try:
        config = ModelConfig.from_json(str(arrays["config"]))
        tokenizer = tokenizer_from_json(str(arrays["tokenizer"]))
        meta = json.loads(str(arrays["meta"]))
    except (ValueError, TypeError, KeyError) as error:
        raise CheckpointError(
            f"Checkpoint {str(path)!r} has an invalid config, tokenizer or metadata entry "
            f"({type(error).__name__}: {error}). Write it again with minitx train or save_checkpoint."
        ) from None

    model = TransformerLM(config)
    params = {name[len("param."):]: a for name, a in arrays.items() if name.startswith("param.")}
    try:
        model.load_parameters(params)
    except ValueError as error:
        raise CheckpointError(f"Checkpoint {str(path)!r} does not match its own config: {error}") from None
    optimizer_state = {name[len("optim."):]: a for name, a in arrays.items() if name.startswith("optim.")}
    return model, tokenizer, optimizer_state, meta
