"""Perplexity as a function of input length.

For each length N the held-out tokens are cut into non-overlapping windows of N + 1 tokens;
the model reads the first N and is scored on predicting each next token. Perplexity is
exp(mean negative log-likelihood) over every predicted token of every window. The windows
for every N are taken from the start of the same text, so the lengths are compared on
(nearly) the same characters.

A model evaluated past its training length sees relative positions it never trained on; the
perplexity there is the measure of how well its position encoding extrapolates.
"""

from __future__ import annotations

import math

import numpy as np
from tqdm.auto import tqdm

from .._checks import check_int, check_tokens
from ..layers import cross_entropy


def perplexity_by_length(model, tokens: np.ndarray, lengths, max_tokens: int = 8192, progress: bool = False) -> dict[int, float]:
    """Return {N: perplexity} for each input length N in ``lengths``.

    Each length uses floor(max_tokens / N) windows, at least one. Lengths beyond the model's
    supported maximum are evaluated anyway (that is the experiment), so the caller decides which
    lengths to ask for.
    """
    tokens = check_tokens("tokens", np.asarray(tokens)[None, :], model.config.vocab_size)[0]
    max_tokens = check_int("max_tokens", max_tokens, minimum=1)
    results = {}
    for N in tqdm(list(lengths), desc="perplexity", disable=not progress, unit="length"):
        N = check_int("length", N, minimum=1)
        n_windows = max(1, max_tokens // N)
        if len(tokens) < N + 1:
            raise ValueError(
                f"Length {N} needs at least {N + 1} held-out tokens, but there are {len(tokens)}. "
                "Use a longer text or shorter lengths."
            )
        n_windows = min(n_windows, (len(tokens) - 1) // N)
        batch = max(1, 4096 // N)  # about 4096 tokens per forward keeps memory small
        total, count = 0.0, 0
        for first in range(0, n_windows, batch):
            starts = np.arange(first, min(first + batch, n_windows)) * N
            index = starts[:, None] + np.arange(N)[None, :]  # (windows, N)
            logits, _ = model.forward(tokens[index], extrapolate=True)
            loss, _ = cross_entropy(logits, tokens[index + 1])
            total += loss * index.size
            count += index.size
        results[N] = math.exp(total / count)
    return results
