"""Sampling text from a TransformerLM, with a KV cache.

The prompt is run once through ``forward_cached`` (the prefill); each new token then costs one
position through every layer instead of a forward over the whole sequence. With
``temperature=0`` decoding is greedy, and the tokens equal those of recomputing the full forward
at every step (``use_cache=False``), which the tests check.
"""

from __future__ import annotations

import numpy as np

from ._checks import check_finite_float, check_int, check_tokens


def _sample(logits: np.ndarray, temperature: float, top_k: int | None, rng) -> np.ndarray:
    """Return one token id per row of ``logits`` (B, V)."""
    if temperature == 0:
        return logits.argmax(axis=-1)
    # Subtracting the max before dividing keeps tiny temperatures from overflowing.
    logits = logits.astype(np.float64)
    logits = (logits - logits.max(axis=-1, keepdims=True)) / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        dropped = np.argsort(-logits, axis=-1, kind="stable")[:, top_k:]  # ties keep the lower ids
        np.put_along_axis(logits, dropped, -np.inf, axis=-1)
    probs = np.exp(logits)
    probs /= probs.sum(axis=-1, keepdims=True)
    return np.array([rng.choice(probs.shape[-1], p=row) for row in probs])


def generate(
    model,
    prompt,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    seed: int | None = None,
    use_cache: bool = True,
    extrapolate: bool = False,
) -> np.ndarray:
    """Return the prompt followed by ``max_new_tokens`` sampled tokens, shape (B, T + new).

    ``prompt`` is an int array (B, T) or (T,); a 1-D prompt gives a 1-D result.
    ``temperature=0`` is greedy decoding; ``top_k`` keeps the k most likely tokens; ``seed``
    makes sampling repeatable. The total length must fit ``model.max_length()`` unless
    ``extrapolate`` is True.
    """
    prompt = np.asarray(prompt) if not isinstance(prompt, np.ndarray) else prompt
    if prompt.size == 0:
        raise ValueError(f"prompt is empty (shape {prompt.shape}). Give at least one token to continue.")
    squeeze = prompt.ndim == 1
    tokens = check_tokens("prompt", prompt[None, :] if squeeze else prompt, model.config.vocab_size)
    max_new_tokens = check_int("max_new_tokens", max_new_tokens, minimum=0)
    temperature = check_finite_float("temperature (0 is greedy)", temperature, minimum=0.0)
    if top_k is not None:
        top_k = check_int("top_k", top_k, minimum=1)
    B, T = tokens.shape
    total = T + max_new_tokens
    model._check_length(total, extrapolate)
    rng = np.random.default_rng(seed)

    if use_cache:
        cache = model.new_cache(B, total)
        logits = model.forward_cached(tokens, cache, extrapolate=extrapolate)[:, -1]  # (B, V)
    for step in range(max_new_tokens):
        if not use_cache:
            logits = model.forward(tokens, extrapolate=extrapolate)[0][:, -1]
        next_token = _sample(logits, temperature, top_k, rng)  # (B,)
        tokens = np.concatenate([tokens, next_token[:, None]], axis=1)  # (B, T) -> (B, T + 1)
        if use_cache and step + 1 < max_new_tokens:
            logits = model.forward_cached(next_token[:, None], cache, extrapolate=extrapolate)[:, -1]
    return tokens[0] if squeeze else tokens
