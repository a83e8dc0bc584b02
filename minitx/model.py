"""A decoder-only transformer language model with hand-written backward, in NumPy.

The architecture is GPT-2's (Radford et al. 2019) with pre-norm blocks:

    x = token_embedding(tokens) [+ sinusoidal table]          (B, T) -> (B, T, C)
    for each block:  x = x + attn(norm_1(x));  x = x + mlp(norm_2(x))
    logits = lm_head(norm_f(x))                               (B, T, C) -> (B, T, V)

Positions enter either at the input (sinusoidal) or inside every attention layer (RoPE,
Self-Extend). With the sinusoidal table the token embeddings are multiplied by sqrt(C), as in
Vaswani et al. 2017 (section 3.4), and initialised with std 1 / sqrt(C): the table has entries
of size 1, and with GPT-2's 0.02 initialisation it would drown the token signal. ``with_position`` swaps the rotary encoding of a trained model without touching
its weights, which is how Self-Extend is applied: no retraining.

Not done here: dropout, weight tying, mixed precision, any batching of variable lengths.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from ._checks import check_bool, check_int, check_tokens
from .config import ModelConfig
from .layers import IGNORE_INDEX, MLP, NORMS, Embedding, Linear, Module, cross_entropy
from .positions import PositionEncoding, RoPE, SelfExtend, pairing_permutation
from .self_attention import CausalSelfAttention, KVCache
from .threads import blas_pinned


def check_targets(targets, vocab_size: int) -> np.ndarray:
    """Return ``targets`` as int64 (B, T) ids, where -1 (``IGNORE_INDEX``) marks an unscored position."""
    check_tokens("targets", targets)  # type and shape
    check_tokens("targets", np.where(targets == IGNORE_INDEX, 0, targets), vocab_size)  # id range
    return targets.astype(np.int64, copy=False)


class Block(Module):
    """One pre-norm transformer block: attention and MLP, each inside a residual connection."""

    def __init__(self, config: ModelConfig, position, rng, dtype):
        super().__init__()
        norm = NORMS[config.norm]
        proj_std = 0.02 / math.sqrt(2 * config.n_layer)  # GPT-2's scaled init of residual projections
        self.ln_1 = norm(config.n_embd, dtype)
        self.attn = CausalSelfAttention(config.n_embd, config.n_head, position, rng, dtype, proj_std)
        self.ln_2 = norm(config.n_embd, dtype)
        self.mlp = MLP(config.n_embd, rng, dtype, proj_std=proj_std)

    def forward(self, x, positions, layer_cache=None):
        # Each sublayer returns a new array, so the residual sums are taken in place.
        x = x + self.attn.forward(self.ln_1.forward(x), positions, layer_cache)
        out = self.mlp.forward(self.ln_2.forward(x))
        out += x
        return out

    def backward(self, dout):
        dx = self.ln_2.backward(self.mlp.backward(dout))
        dx += dout
        dinput = self.ln_1.backward(self.attn.backward(dx))
        dinput += dx
        return dinput


class TransformerLM(Module):
    """Decoder-only language model: ``model(tokens)`` maps (B, T) ids to (B, T, V) logits."""

    def __init__(self, config: ModelConfig, seed: int = 0):
        super().__init__()
        if not isinstance(config, ModelConfig):
            raise TypeError(f"config must be a ModelConfig, got {type(config).__name__}.")
        self.config = config
        self.position = config.build_position()
        dtype = np.dtype(config.dtype)
        rng = np.random.default_rng(seed)

        # sqrt(C) scale for absolute tables, so tokens and positions start at the same size
        self.embedding_scale = math.sqrt(config.n_embd) if self.position.kind == "absolute" else 1.0
        embedding_std = 1 / self.embedding_scale if self.position.kind == "absolute" else 0.02
        self.wte = Embedding(config.vocab_size, config.n_embd, rng, dtype, std=embedding_std)
        self.blocks = [Block(config, self.position, rng, dtype) for _ in range(config.n_layer)]
        self.ln_f = NORMS[config.norm](config.n_embd, dtype)
        self.lm_head = Linear(config.n_embd, config.vocab_size, rng, dtype, bias=False)

    # ----------------------------------------------------------------- properties and settings

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.config.dtype)

    @property
    def n_params(self) -> int:
        return sum(array.size for _, array in self.named_parameters())

    def max_length(self) -> int:
        """Return the longest input the position encoding keeps inside the training length."""
        return self.position.max_length(self.config.context_length)

    def set_backend(self, backend: str) -> "TransformerLM":
        """Choose the attention backend, "numba" (default) or "numpy"; returns the model."""
        from .attention import BACKENDS

        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}.")
        for block in self.blocks:
            block.attn.backend = backend
        return self

    # ----------------------------------------------------------------- forward and backward

    def _check_length(self, T: int, extrapolate: bool) -> None:
        extrapolate = check_bool("extrapolate", extrapolate)
        limit = self.max_length()
        if T > limit and not extrapolate:
            L = self.config.context_length
            hint = (
                "Pass extrapolate=True (--extrapolate on the command line) to run it anyway, "
                "and expect the loss to grow past the training length. Or switch a RoPE model "
                "to Self-Extend with model.with_position(SelfExtend(...)) (--position "
                "self-extend --group-size G --window W), choosing G and W so that "
                f"G * ({L} - W + W // G) >= {T}."
            )
            raise ValueError(
                f"Input length T={T} exceeds {limit}, the longest input this model supports "
                f"(trained at context_length={L}, position={self.config.position}). {hint}"
            )

    def _embed(self, tokens, positions):
        x = self.wte.forward(tokens)  # (B, T) -> (B, T, C)
        if self.embedding_scale != 1.0:
            x = x * self.dtype.type(self.embedding_scale)
        if self.position.kind == "absolute":
            x = x + self.position.table(positions).astype(self.dtype)  # (T, C) broadcast over B
        return x

    @blas_pinned
    def forward(self, tokens, targets=None, extrapolate: bool = False):
        """Return (logits, loss); loss is None without targets. Caches activations for backward.

        A target of -1 (``layers.IGNORE_INDEX``) is not scored, for example the prompt tokens of
        a row whose answer alone should be learned.
        """
        tokens = check_tokens("tokens", tokens, self.config.vocab_size)
        B, T = tokens.shape
        self._check_length(T, extrapolate)
        positions = np.arange(T)

        x = self._embed(tokens, positions)
        for block in self.blocks:
            x = block.forward(x, positions)
        logits = self.lm_head.forward(self.ln_f.forward(x))  # (B, T, C) -> (B, T, V)

        if targets is None:
            self._dlogits = None
            return logits, None
        targets = check_targets(targets, self.config.vocab_size)
        if targets.shape != tokens.shape:
            raise ValueError(f"targets must have the shape of tokens {tokens.shape}, got {targets.shape}.")
        loss, self._dlogits = cross_entropy(logits, targets)
        return logits, loss

    def __call__(self, tokens, extrapolate: bool = False):
        return self.forward(tokens, extrapolate=extrapolate)[0]

    @blas_pinned
    def backward(self) -> dict[str, np.ndarray]:
        """Backpropagate the loss of the last ``forward(tokens, targets)``; return the gradients."""
        if getattr(self, "_dlogits", None) is None:
            raise RuntimeError("backward() needs a preceding forward(tokens, targets) with targets.")
        dx = self.ln_f.backward(self.lm_head.backward(self._dlogits))
        for block in reversed(self.blocks):
            dx = block.backward(dx)
        if self.embedding_scale != 1.0:
            dx *= self.dtype.type(self.embedding_scale)
        self.wte.backward(dx)  # the sinusoidal table itself is fixed
        self._dlogits = None
        return self.gradients()

    # ----------------------------------------------------------------- decoding with a cache

    def _cache_layout(self) -> tuple:
        two_copies = self.position.kind == "rotary" and self.position.window is not None
        c = self.config
        return (c.n_layer, c.n_head, c.head_dim, self.dtype.str, two_copies)

    def new_cache(self, batch_size: int, capacity: int) -> KVCache:
        """Return an empty KV cache for ``batch_size`` rows of up to ``capacity`` tokens."""
        batch_size = check_int("batch_size", batch_size, minimum=1)
        capacity = check_int("capacity", capacity, minimum=1)
        n_layer, n_head, head_dim, dtype, two_copies = self._cache_layout()
        return KVCache(n_layer, batch_size, n_head, capacity, head_dim, np.dtype(dtype), two_copies)

    @blas_pinned
    def forward_cached(self, tokens, cache: KVCache, extrapolate: bool = False) -> np.ndarray:
        """Append ``tokens`` (B, T_new) to ``cache``; return their logits (B, T_new, V)."""
        tokens = check_tokens("tokens", tokens, self.config.vocab_size)
        B, T = tokens.shape
        if not isinstance(cache, KVCache) or cache.layout != self._cache_layout():
            raise ValueError(
                f"The cache was not made for this model: its (layers, heads, head size, dtype, two "
                f"key copies) are {getattr(cache, 'layout', None)}, the model needs "
                f"{self._cache_layout()}. Make it with model.new_cache(batch_size, capacity)."
            )
        if B != cache.batch_size:
            raise ValueError(f"tokens have batch size {B}, but the cache was made for {cache.batch_size}.")
        end = cache.length + T
        if end > cache.capacity:
            raise ValueError(
                f"The cache has room for {cache.capacity} positions, {cache.length} are used, and "
                f"{T} more were passed. Make the cache with capacity >= {end}."
            )
        self._check_length(end, extrapolate)
        positions = np.arange(cache.length, end)

        x = self._embed(tokens, positions)
        for block, layer_cache in zip(self.blocks, cache.layers):
            x = block.forward(x, positions, layer_cache)
        cache.length = end
        return self.lm_head.forward(self.ln_f.forward(x))  # (B, T_new, C) -> (B, T_new, V)

    # ----------------------------------------------------------------- swapping positions

    def with_position(self, position: PositionEncoding) -> "TransformerLM":
        """Return a copy of this model that uses ``position``; the weights are copied unchanged.

        Only rotary encodings can replace rotary ones: the weights of a model trained with an
        absolute table expect that table at the input. A change of RoPE pairing permutes the
        query and key channels of each head, so the converted model computes the same scores.
        """
        if not isinstance(position, PositionEncoding):
            raise TypeError(f"position must be a minitx.positions encoding, got {type(position).__name__}.")
        current = self.config.position
        if self.position.kind != "rotary" or position.kind != "rotary":
            raise ValueError(
                f"Cannot switch a model trained with position={current!r} to "
                f"{type(position).__name__}. Self-Extend and RoPE remap the rotations of a model "
                "trained with RoPE; a sinusoidal model has no rotations to remap. Train a model "
                "with ModelConfig(position='rope') to use Self-Extend."
            )
        if position.head_dim != self.config.head_dim:
            raise ValueError(
                f"The model's heads have head_dim={self.config.head_dim}, but the encoding was "
                f"built for head_dim={position.head_dim}. Build it with head_dim={self.config.head_dim}."
            )

        settings = position.config()
        fields = {"position": position.name, "base": settings["base"], "pairing": settings["pairing"]}
        if isinstance(position, SelfExtend):
            fields.update(group_size=position.group_size, window=position.window)
        new = TransformerLM(dataclasses.replace(self.config, **fields))
        new.load_parameters(self.parameters())
        new.set_backend(self.blocks[0].attn.backend)

        if settings["pairing"] != self.config.pairing:
            new._permute_qk(to_pairing=settings["pairing"])
        return new

    def copy(self) -> "TransformerLM":
        """Return a deep copy with its own parameter arrays."""
        new = TransformerLM(self.config)
        new.load_parameters(self.parameters())
        new.set_backend(self.blocks[0].attn.backend)
        return new

    def load_parameters(self, params: dict[str, np.ndarray]) -> None:
        """Copy ``params`` (dotted name -> array) into this model, checking names and shapes."""
        own = self.parameters()
        missing = sorted(set(own) - set(params))
        unexpected = sorted(set(params) - set(own))
        if missing or unexpected:
            raise ValueError(f"Parameter names do not match the model: missing {missing}, unexpected {unexpected}.")
        for name, array in own.items():
            if params[name].shape != array.shape:
                raise ValueError(f"Parameter {name} has shape {params[name].shape}, expected {array.shape}.")
            array[...] = params[name]

    def _permute_qk(self, to_pairing: str) -> None:
        """Permute each head's query and key channels between the two RoPE pairings."""
        C, hs = self.config.n_embd, self.config.head_dim
        perm = pairing_permutation(hs)
        if to_pairing == "interleaved":
            perm = np.argsort(perm)  # the inverse permutation
        heads = np.arange(0, C, hs)[:, None]  # (NH, 1) first channel of each head
        columns = (heads + perm[None, :]).reshape(-1)  # (C,) new order within q (and within k)
        order = np.concatenate([columns, C + columns, np.arange(2 * C, 3 * C)])  # q, k permuted; v kept
        for block in self.blocks:
            for name in block.attn.c_attn.params:
                array = block.attn.c_attn.params[name]
                array[...] = array[..., order]


__all__ = ["Block", "ModelConfig", "RoPE", "SelfExtend", "TransformerLM"]
