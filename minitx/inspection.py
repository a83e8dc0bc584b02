"""Looking inside a trained model: the attention probabilities of every layer and head.

``attention_maps`` runs the model forward once and, at each block, takes the queries and keys
that block computes and passes them to ``minitx.attention_weights`` with the model's own
position encoding. The probabilities are therefore exactly those the forward pass uses,
including Self-Extend's merged neighbour and grouped scores.

The (T, T) matrices are materialised, so this is for short inputs (a few hundred tokens).
"""

from __future__ import annotations

import numpy as np

from ._checks import check_tokens
from .attention import attention_weights


def attention_maps(model, tokens, extrapolate: bool = False) -> np.ndarray:
    """Return the attention probabilities of ``model`` on ``tokens``, shape (n_layer, B, NH, T, T).

    ``tokens`` is (B, T) or (T,); a 1-D input is treated as B = 1. Row i of each map is query
    position i and column j key position j; entries with j > i are exactly 0. The model's
    cached activations are overwritten, as by any forward pass.
    """
    tokens = np.asarray(tokens)
    if tokens.ndim == 1:
        tokens = tokens[None, :]
    tokens = check_tokens("tokens", tokens, model.config.vocab_size)
    B, T = tokens.shape
    model._check_length(T, extrapolate)
    positions = np.arange(T)
    rotary = model.position if model.position.kind == "rotary" else None

    x = model._embed(tokens, positions)  # (B, T, C)
    maps = []
    for block in model.blocks:
        q, k, _ = block.attn.project_qkv(block.ln_1.forward(x))  # (B, NH, T, hs) each
        maps.append(attention_weights(q, k, position=rotary))  # (B, NH, T, T)
        x = block.forward(x, positions)
    return np.stack(maps)  # (n_layer, B, NH, T, T)


__all__ = ["attention_maps"]
