"""Multi-head causal self-attention as a layer, and the KV cache it decodes with.

The layer projects x (B, T, C) to q, k, v, splits NH heads of hs = C / NH channels, applies the
rotary position encoding (if any) to q and k, runs attention through ``minitx.attention`` and
projects back. Its backward undoes each step in reverse order.

The KV cache stores keys after rotation. Plain RoPE needs one copy per key (rotated at j);
Self-Extend stores two (rotated at j and at j // G). Neither depends on the query, so a
cached key is never rotated again, and decoding one token gives the logits of a full forward.
"""

from __future__ import annotations

import numpy as np

from .attention import api as attention
from .layers import Linear, Module


class KVCache:
    """Rotated keys and values of every layer, for ``capacity`` positions of ``batch_size`` rows."""

    def __init__(self, n_layer, batch_size, n_head, capacity, head_dim, dtype, two_copies):
        shape = (batch_size, n_head, capacity, head_dim)  # (B, NH, capacity, hs)
        self.layout = (n_layer, n_head, head_dim, np.dtype(dtype).str, two_copies)
        self.capacity = capacity
        self.batch_size = batch_size
        self.length = 0
        self.layers = [
            {
                "k": np.zeros(shape, dtype),
                "k_far": np.zeros(shape, dtype) if two_copies else None,
                "v": np.zeros(shape, dtype),
            }
            for _ in range(n_layer)
        ]


class CausalSelfAttention(Module):
    """Multi-head causal self-attention with a pluggable position encoding."""

    def __init__(self, n_embd, n_head, position, rng, dtype=np.float32, proj_std=0.02):
        super().__init__()
        self.n_head = n_head
        self.position = position
        self.backend = "numba"
        self.c_attn = Linear(n_embd, 3 * n_embd, rng, dtype)
        self.c_proj = Linear(n_embd, n_embd, rng, dtype, std=proj_std)

    def _split_heads(self, x):
        B, T, C = x.shape
        return x.reshape(B, T, self.n_head, C // self.n_head).transpose(0, 2, 1, 3)  # (B, T, C) -> (B, NH, T, hs)

    def project_qkv(self, x):
        """Return the un-rotated q, k, v of x (B, T, C), each (B, NH, T, hs)."""
        qkv = self.c_attn.forward(x)  # (B, T, C) -> (B, T, 3C)
        return tuple(self._split_heads(part) for part in np.split(qkv, 3, axis=-1))

    def forward(self, x, positions, layer_cache=None):
        """Return (B, T, C); with ``layer_cache`` the new keys are appended at ``positions``."""
        B, T, C = x.shape
        q, k, v = self.project_qkv(x)  # (B, NH, T, hs) each

        if self.position is not None and self.position.kind == "rotary":
            q_near, q_far = self.position.rotate_queries(q, positions)
            k_near, k_far = self.position.rotate_keys(k, positions)
            window = self.position.window
        else:
            q_near, k_near, q_far, k_far, window = q, k, None, None, None

        if layer_cache is not None:
            start, end = int(positions[0]), int(positions[-1]) + 1
            layer_cache["k"][:, :, start:end] = k_near
            layer_cache["v"][:, :, start:end] = v
            k_near, v = layer_cache["k"][:, :, :end], layer_cache["v"][:, :, :end]
            if k_far is not None:
                layer_cache["k_far"][:, :, start:end] = k_far
                k_far = layer_cache["k_far"][:, :, :end]

        q_start = int(positions[0])
        y, lse = attention.forward(
            q_near, k_near, v, q_far, k_far, window, causal=True, q_start=q_start, backend=self.backend
        )
        self.saved = (q_near, k_near, v, q_far, k_far, window, q_start, y, lse, positions)
        y = y.transpose(0, 2, 1, 3).reshape(B, T, C)  # (B, NH, T, hs) -> (B, T, C)
        return self.c_proj.forward(y)

    def backward(self, dout):
        q_near, k_near, v, q_far, k_far, window, q_start, y, lse, positions = self.saved
        B, T, C = dout.shape
        dy = self._split_heads(self.c_proj.backward(dout))  # (B, T, C) -> (B, NH, T, hs)
        dq, dk, dv, dq_far, dk_far = attention.backward(
            dy, q_near, k_near, v, y, lse, q_far, k_far, window, causal=True, q_start=q_start,
            backend=self.backend,
        )
        if self.position is not None and self.position.kind == "rotary":
            dq = self.position.unrotate(dq, dq_far, positions, queries=True)
            dk = self.position.unrotate(dk, dk_far, positions, queries=False)

        # Write each gradient straight into its third of the (B, T, 3C) input gradient of
        # c_attn, whose channels are ordered q, k, v and head by head within each.
        NH, hs = self.n_head, C // self.n_head
        dqkv = np.empty((B, T, 3, NH, hs), dtype=dy.dtype)
        for index, grad in enumerate((dq, dk, dv)):
            dqkv[:, :, index] = grad.transpose(0, 2, 1, 3)  # (B, NH, T, hs) -> (B, T, NH, hs)
        return self.c_attn.backward(dqkv.reshape(B, T, 3 * C))  # (B, T, 3, NH, hs) -> (B, T, 3C)
