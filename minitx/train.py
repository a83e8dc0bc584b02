"""The training loop: batches, AdamW, schedule, clipping, validation, checkpoints, resume.

One step: sample ``batch_size`` random windows of ``context_length`` tokens, forward with the
next-token targets, backward, clip the global gradient norm, set the learning rate from the
warmup + cosine schedule, and apply AdamW.

Reproducibility: the weights come from ``seed``, and the batch of step s from a generator
seeded with (seed, s), so a run resumed from a checkpoint at step s sees exactly the batches
the uninterrupted run would have seen, and gives the same loss curve.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time

import numpy as np
from tqdm.auto import tqdm

from ._checks import check_finite_float, check_int, check_positive_float
from .checkpoint import save_checkpoint
from .data import get_batch
from .optim import AdamW, clip_grad_norm, learning_rate

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings. Learning rates are per step; intervals are in steps."""

    steps: int = 1000
    batch_size: int = 16
    learning_rate: float = 3e-3
    min_learning_rate: float = 3e-4
    warmup_steps: int = 50
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    eval_interval: int = 100
    eval_batches: int = 8
    checkpoint_interval: int = 0
    seed: int = 0

    def __post_init__(self):
        # Store plain ints and floats, so NumPy scalars never reach the JSON of a checkpoint.
        minimums = {"steps": 1, "batch_size": 1, "warmup_steps": 0, "eval_interval": 1,
                    "eval_batches": 1, "checkpoint_interval": 0, "seed": 0}
        for name, minimum in minimums.items():
            object.__setattr__(self, name, check_int(name, getattr(self, name), minimum=minimum))
        for name in ("learning_rate", "min_learning_rate"):
            object.__setattr__(self, name, check_positive_float(name, getattr(self, name)))
        for name in ("weight_decay", "grad_clip"):  # 0 turns them off
            object.__setattr__(self, name, check_finite_float(name, getattr(self, name), minimum=0.0))
        if self.min_learning_rate > self.learning_rate:
            raise ValueError(
                f"min_learning_rate={self.min_learning_rate} is above learning_rate={self.learning_rate}; "
                "the cosine schedule decays from the peak down to the minimum. Lower min_learning_rate."
            )


def estimate_loss(model, tokens, batch_size: int, n_batches: int, seed: int = 0) -> float:
    """Return the mean next-token loss (nats) over ``n_batches`` fixed windows of ``tokens``."""
    T = model.config.context_length
    losses = []
    for index in range(n_batches):
        x, y = get_batch(tokens, batch_size, T, np.random.default_rng([seed, 1, index]))
        losses.append(model.forward(x, y)[1])
    model._dlogits = None
    return float(np.mean(losses))


def train(
    model,
    train_tokens: np.ndarray,
    val_tokens: np.ndarray,
    config: TrainConfig,
    tokenizer=None,
    checkpoint_path=None,
    resume: dict | None = None,
    progress: bool = True,
    description: str = "train",
    sample_batch=None,
) -> dict:
    """Train ``model`` in place and return its history.

    ``resume`` is ``{"optimizer_state": ..., "meta": ...}`` as returned by ``load_checkpoint``;
    training then continues from the stored step. With ``checkpoint_path`` (and a tokenizer) a
    checkpoint is written every ``checkpoint_interval`` steps and at the end.

    ``sample_batch(batch_size, T, rng)`` returns the (inputs, targets) pair of one step, each
    (batch_size, T); by default it is ``get_batch`` on ``train_tokens``. Validation always
    reads ``val_tokens``.

    The history contains lists ``step``, ``train_loss``, ``lr``, ``val_step``, ``val_loss`` and the
    final ``tokens_per_second``.
    """
    if checkpoint_path is not None and tokenizer is None:
        raise ValueError("Saving checkpoints needs the tokenizer: pass tokenizer=...")
    T = model.config.context_length
    for split, tokens in (("training", train_tokens), ("validation", val_tokens)):
        if len(tokens) < T + 1:
            raise ValueError(
                f"The {split} split has {len(tokens)} tokens, fewer than context_length + 1 = {T + 1}. "
                f"Use a longer text (the validation split is its last 10%) or a shorter context_length."
            )
    if sample_batch is None:
        sample_batch = lambda batch_size, length, rng: get_batch(train_tokens, batch_size, length, rng)
    params = model.parameters()
    optimizer = AdamW(params, weight_decay=config.weight_decay)
    history = {"step": [], "train_loss": [], "lr": [], "val_step": [], "val_loss": []}
    start = 0
    if resume:
        optimizer.load_state(resume["optimizer_state"])
        history = resume["meta"]["history"]
        start = int(resume["meta"]["step"])
        if start >= config.steps:
            log.info("checkpoint is already at step %d of %d; nothing to train", start, config.steps)
            return history

    def save(step):
        meta = {"step": step, "history": history, "train_config": dataclasses.asdict(config)}
        save_checkpoint(checkpoint_path, model, tokenizer, optimizer, meta)
        log.info("saved checkpoint %s at step %d", checkpoint_path, step)

    def validate(step):
        loss = estimate_loss(model, val_tokens, config.batch_size, config.eval_batches, config.seed)
        history["val_step"].append(step)
        history["val_loss"].append(loss)
        log.info("step %d: validation loss %.4f", step, loss)
        return loss

    bar = tqdm(range(start, config.steps), desc=description, disable=not progress, unit="step", dynamic_ncols=True)
    tokens_per_step = config.batch_size * T
    started = time.perf_counter()
    val_loss = history["val_loss"][-1] if history["val_loss"] else float("nan")
    for step in bar:
        x, y = sample_batch(config.batch_size, T, np.random.default_rng([config.seed, step]))
        _, loss = model.forward(x, y)
        if not math.isfinite(loss):
            raise FloatingPointError(f"The training loss is {loss} at step {step}. Lower the learning rate.")
        grads = model.backward()
        clip_grad_norm(grads, config.grad_clip)
        lr = learning_rate(step, config.learning_rate, config.warmup_steps, config.steps, config.min_learning_rate)
        optimizer.step(grads, lr)

        history["step"].append(step)
        history["train_loss"].append(loss)
        history["lr"].append(lr)
        done = step + 1
        if done % config.eval_interval == 0 or done == config.steps:
            val_loss = validate(done)
        elapsed = time.perf_counter() - started
        rate = tokens_per_step * (done - start) / elapsed
        shown_val = "pending" if math.isnan(val_loss) else f"{val_loss:.3f}"  # no validation run yet
        bar.set_postfix(loss=f"{loss:.3f}", val=shown_val, tok_s=f"{rate:,.0f}")
        if checkpoint_path is not None and config.checkpoint_interval and done % config.checkpoint_interval == 0:
            save(done)

    history["tokens_per_second"] = tokens_per_step * (config.steps - start) / max(time.perf_counter() - started, 1e-9)
    if checkpoint_path is not None:
        save(config.steps)
    return history
