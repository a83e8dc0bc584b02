"""Training recipes for the shipped checkpoints, and ``load_pretrained`` to load them by name.

A recipe fixes everything a run depends on: the corpus (the CPython language reference topics),
the tokenizer (one id per character), the architecture, the optimiser settings, the share of
passkey rows in each batch and the seed. ``run_recipe(name)`` trains through ``minitx.train``
and writes a checkpoint whose meta stores the recipe and the full loss history, so
``minitx train --recipe NAME`` reproduces a shipped file.

Two families, each with a RoPE and a sinusoidal member of the same size:

- ``char-*``: a character model of the corpus at L = 128, for perplexity by length.
- ``passkey-*``: a model at L = 256 trained on a mix of corpus windows and passkey rows
  (``PasskeyMixture``) with the key at every depth and distance up to L, so that it can learn
  to copy a key it has read.

Every training row has at most L tokens, so no training step uses a position or relative
position >= L; Self-Extend is applied afterwards, without training.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np

from ._checks import check_int
from .checkpoint import load_checkpoint, save_checkpoint
from .config import ModelConfig
from .data import CharTokenizer, load_default_corpus, split_train_val
from .layers import IGNORE_INDEX
from .model import TransformerLM
from .tasks.passkey import MIN_LENGTH, KEY_DIGITS, make_prompt, random_key
from .train import TrainConfig, train

log = logging.getLogger(__name__)

CHECKPOINT_DIR = Path(__file__).parent / "checkpoints"


@dataclasses.dataclass(frozen=True)
class Recipe:
    """One seeded training run; ``passkey_fraction`` is the share of passkey rows per batch."""

    name: str
    description: str
    position: str
    context_length: int
    n_layer: int
    n_head: int
    n_embd: int
    steps: int
    batch_size: int = 16
    learning_rate: float = 3e-3
    min_learning_rate: float = 3e-4
    warmup_steps: int = 50
    eval_interval: int = 100
    passkey_fraction: float = 0.0
    score_answer_only: bool = False
    seed: int = 0

    def model_config(self, vocab_size: int) -> ModelConfig:
        return ModelConfig(vocab_size, self.context_length, n_layer=self.n_layer, n_head=self.n_head,
                           n_embd=self.n_embd, position=self.position)

    def train_config(self) -> TrainConfig:
        return TrainConfig(steps=self.steps, batch_size=self.batch_size, learning_rate=self.learning_rate,
                           min_learning_rate=self.min_learning_rate, warmup_steps=self.warmup_steps,
                           eval_interval=self.eval_interval, seed=self.seed)


def _char_recipe(position: str) -> Recipe:
    return Recipe(
        name=f"char-{position}",
        description=f"{position} character model of the CPython topics at L=128",
        position=position, context_length=128, n_layer=3, n_head=4, n_embd=96, steps=800,
    )


def _passkey_recipe(position: str) -> Recipe:
    # NOTE: with these settings the RoPE model copies from fixed distances (about 150 tokens
    # back) instead of matching the key by content, so Self-Extend's grouping breaks it, and the
    # sinusoidal one does not retrieve at all. The README's long-context section has the analysis.
    return Recipe(
        name=f"passkey-{position}",
        description=f"{position} model at L=256 on corpus text mixed with passkey prompts",
        position=position, context_length=256, n_layer=3, n_head=4, n_embd=64, steps=1000,
        passkey_fraction=0.75, score_answer_only=True,
    )


RECIPES = {
    recipe.name: recipe
    for recipe in (_char_recipe("rope"), _char_recipe("sinusoidal"), _passkey_recipe("rope"), _passkey_recipe("sinusoidal"))
}


def get_recipe(name: str) -> Recipe:
    """Return the recipe called ``name``, or raise listing the valid names."""
    if name not in RECIPES:
        raise ValueError(f"Unknown recipe {name!r}. Valid names are {', '.join(RECIPES)}.")
    return RECIPES[name]


class PasskeyMixture:
    """Batches of corpus windows mixed with passkey rows, all exactly T + 1 tokens long.

    A passkey row is ``corpus + prompt + answer + corpus``: a prompt of random length (from
    the shortest possible up to the whole row) with the key at a uniform random depth, its
    answer, and random corpus windows filling the rest before and after. The corpus padding
    moves the question to different positions in the row. ``fraction`` of the rows of every
    batch (rounded) are passkey rows, the rest plain corpus windows.

    With ``score_answer_only`` a passkey row scores only the tokens that can be copied: the
    answer and the repeat of the key inside the key sentence. Its other targets are -1
    (ignored), so the random first copy of the key adds no noise and the filler, learned
    within a few hundred steps, does not dilute the retrieval signal. Corpus rows are always
    scored in full.
    """

    def __init__(self, tokenizer, corpus_tokens: np.ndarray, fraction: float, score_answer_only: bool = False):
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"fraction must be between 0 and 1, got {fraction}.")
        self.tokenizer = tokenizer
        self.corpus_tokens = np.asarray(corpus_tokens, dtype=np.int64)
        self.fraction = float(fraction)
        self.score_answer_only = bool(score_answer_only)

    def _corpus_piece(self, length: int, rng) -> np.ndarray:
        start = int(rng.integers(0, len(self.corpus_tokens) - length))
        return self.corpus_tokens[start:start + length]

    def passkey_row(self, T: int, rng) -> tuple[np.ndarray, np.ndarray]:
        """Return one passkey row of T + 1 token ids and the (T + 1,) mask of scored tokens."""
        answer_length = 1 + KEY_DIGITS
        longest = T + 1 - answer_length
        if longest < MIN_LENGTH:
            raise ValueError(
                f"A passkey row needs context_length >= {MIN_LENGTH + answer_length - 1}, got {T}. "
                "Train passkey recipes at a longer context."
            )
        length = int(rng.integers(MIN_LENGTH, longest + 1))
        prompt = make_prompt(length, float(rng.uniform(0.0, 1.0)), random_key(rng))
        spare = longest - length
        before = int(rng.integers(0, spare + 1))
        ids = self.tokenizer.encode(prompt.text + prompt.answer)
        row = np.concatenate([self._corpus_piece(before, rng), ids, self._corpus_piece(spare - before, rng)])

        scored = np.ones(T + 1, dtype=bool)
        if self.score_answer_only:
            scored[:] = False
            repeat = before + prompt.text.index(prompt.key, prompt.key_start + len("The pass key is ") + KEY_DIGITS)
            scored[repeat:repeat + KEY_DIGITS] = True
            answer = before + prompt.length
            scored[answer:answer + answer_length] = True
        return row, scored

    def __call__(self, batch_size: int, T: int, rng) -> tuple[np.ndarray, np.ndarray]:
        """Return (inputs, targets), each (batch_size, T); passkey rows come first.

        Targets of unscored tokens are -1 (see ``score_answer_only``).
        """
        n_passkey = round(self.fraction * batch_size)
        rows, scored = [], []
        for _ in range(n_passkey):
            row, mask = self.passkey_row(T, rng)
            rows.append(row)
            scored.append(mask)
        for _ in range(batch_size - n_passkey):
            rows.append(self._corpus_piece(T + 1, rng))
            scored.append(np.ones(T + 1, dtype=bool))
        batch, scored = np.stack(rows), np.stack(scored)  # (batch_size, T + 1) each
        targets = np.where(scored[:, 1:], batch[:, 1:], IGNORE_INDEX)
        return batch[:, :-1], targets


def corpus_and_tokenizer():
    """Return (tokenizer, train_ids, val_ids) for the default corpus, as every recipe uses it."""
    text = load_default_corpus()
    tokenizer = CharTokenizer.from_text(text)
    train_ids, val_ids = split_train_val(tokenizer.encode(text))
    return tokenizer, train_ids, val_ids


def run_recipe(name: str, out=None, steps: int | None = None, progress: bool = True):
    """Train recipe ``name``; return (model, tokenizer, history).

    ``steps`` stops early (for tests): the first ``steps`` losses equal those of the full run,
    except that the learning-rate schedule follows ``steps``. With ``out`` the model is saved
    there without optimiser state, with the recipe and the history in its meta.
    """
    recipe = get_recipe(name)
    tokenizer, train_ids, val_ids = corpus_and_tokenizer()
    model = TransformerLM(recipe.model_config(tokenizer.vocab_size), seed=recipe.seed)
    train_config = recipe.train_config()
    if steps is not None:
        train_config = dataclasses.replace(train_config, steps=check_int("steps", steps, minimum=1))
    sample_batch = None
    if recipe.passkey_fraction > 0:
        sample_batch = PasskeyMixture(tokenizer, train_ids, recipe.passkey_fraction, recipe.score_answer_only)
    history = train(model, train_ids, val_ids, train_config, progress=progress, description=name,
                    sample_batch=sample_batch)
    if out is not None:
        meta = {"recipe": dataclasses.asdict(recipe), "step": train_config.steps, "history": history,
                "train_config": dataclasses.asdict(train_config)}
        path = save_checkpoint(out, model, tokenizer, meta=meta)
        log.info("wrote %s", path)
    return model, tokenizer, history


def pretrained_path(name_or_path) -> Path:
    """Return the checkpoint file of a shipped model name, or ``name_or_path`` itself if it is a file."""
    path = Path(name_or_path)
    if path.suffix == ".npz" or path.is_file():
        return path
    if name_or_path not in RECIPES:
        raise ValueError(
            f"{name_or_path!r} is neither a shipped model ({', '.join(RECIPES)}) nor a .npz "
            "checkpoint file. Pass one of those names or the path of a file from minitx train."
        )
    shipped = CHECKPOINT_DIR / f"{name_or_path}.npz"
    if not shipped.is_file():
        raise FileNotFoundError(
            f"The shipped checkpoint {str(shipped)!r} is missing from the installed package. "
            f"Recreate it with `minitx train --recipe {name_or_path} --out {shipped}`."
        )
    return shipped


def load_pretrained(name_or_path):
    """Return (model, tokenizer) of a shipped model name such as "passkey-rope", or a .npz path."""
    model, tokenizer, _, _ = load_checkpoint(pretrained_path(name_or_path))
    return model, tokenizer
