"""Tokens per second of one full training step of the demo model, minitx against torch.

Run from the repository root:

    python benchmarks/train_step.py --steps 20

The model is ModelConfig(vocab_size=103, context_length=128, n_layer=3, n_head=4, n_embd=96)
with RoPE, float32, trained on batches of 16 x 128 tokens. A step is forward with the loss,
backward, gradient clipping and AdamW, as in ``minitx.train``. Rows:

- minitx with backend "numba" (the compiled attention forward and backward);
- minitx with backend "numpy" (the reference attention, which materialises (T, T) matrices);
- the same architecture in torch (pre-norm blocks, interleaved RoPE, SDPA, tanh GELU, AdamW),
  when torch is installed.

Every row shows the median step time and tokens per second; "tokens/s / torch" is minitx's
throughput divided by torch's, so above 1 means minitx is faster.
"""

from __future__ import annotations

import argparse
import os

import numpy as np

from common import describe_machine, format_table, median_seconds, torch

from minitx import ModelConfig, TransformerLM
from minitx.optim import AdamW, clip_grad_norm

CONFIG = ModelConfig(vocab_size=103, context_length=128, n_layer=3, n_head=4, n_embd=96)
BATCH = 16


def minitx_step(backend, tokens, targets):
    model = TransformerLM(CONFIG, seed=0).set_backend(backend)
    optimizer = AdamW(model.parameters())

    def step():
        model.forward(tokens, targets)
        grads = model.backward()
        clip_grad_norm(grads, 1.0)
        optimizer.step(grads, lr=1e-3)

    return step


def torch_step(tokens, targets):
    """Return one training step of the equivalent torch model."""
    nn, F = torch.nn, torch.nn.functional
    C, NH, L = CONFIG.n_embd, CONFIG.n_head, CONFIG.context_length
    hs = C // NH
    theta = CONFIG.base ** (-torch.arange(0, hs, 2, dtype=torch.float64) / hs)  # (hs/2,)
    angles = torch.arange(L, dtype=torch.float64)[:, None] * theta[None, :]  # (T, hs/2)
    cos, sin = angles.cos().float(), angles.sin().float()

    def rope(x):  # interleaved pairs (2m, 2m + 1), as minitx's default
        a, b = x[..., 0::2], x[..., 1::2]  # (B, NH, T, hs/2) each
        return torch.stack((a * cos - b * sin, a * sin + b * cos), dim=-1).flatten(-2)

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1, self.ln_2 = nn.LayerNorm(C), nn.LayerNorm(C)
            self.c_attn, self.c_proj = nn.Linear(C, 3 * C), nn.Linear(C, C)
            self.fc, self.proj = nn.Linear(C, 4 * C), nn.Linear(4 * C, C)

        def forward(self, x):
            B, T, _ = x.shape
            q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=-1)  # (B, T, C) each
            q, k, v = (t.view(B, T, NH, hs).transpose(1, 2) for t in (q, k, v))  # (B, NH, T, hs)
            y = F.scaled_dot_product_attention(rope(q), rope(k), v, is_causal=True)
            x = x + self.c_proj(y.transpose(1, 2).reshape(B, T, C))
            return x + self.proj(F.gelu(self.fc(self.ln_2(x)), approximate="tanh"))

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte = nn.Embedding(CONFIG.vocab_size, C)
            self.blocks = nn.ModuleList(Block() for _ in range(CONFIG.n_layer))
            self.ln_f = nn.LayerNorm(C)
            self.lm_head = nn.Linear(C, CONFIG.vocab_size, bias=False)

        def forward(self, idx):
            x = self.wte(idx)
            for block in self.blocks:
                x = block(x)
            return self.lm_head(self.ln_f(x))

    torch.manual_seed(0)
    model = Model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1)
    idx, target = torch.from_numpy(tokens), torch.from_numpy(targets)

    def step():
        logits = model(idx)
        loss = F.cross_entropy(logits.view(-1, logits.shape[-1]), target.view(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()

    return step


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="timed steps per row; the median is shown")
    args = parser.parse_args()
    if torch is not None:
        torch.set_num_threads(os.cpu_count())

    print(describe_machine())
    print(f"{CONFIG}\nbatch {BATCH} x {CONFIG.context_length} tokens\n")
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, CONFIG.vocab_size, size=(BATCH, CONFIG.context_length))
    targets = np.roll(tokens, -1, axis=1)
    n_tokens = tokens.size

    seconds = {
        "minitx, numba attention": median_seconds(minitx_step("numba", tokens, targets), args.steps),
        "minitx, numpy attention": median_seconds(minitx_step("numpy", tokens, targets), args.steps),
    }
    if torch is not None:
        seconds["torch"] = median_seconds(torch_step(tokens, targets), args.steps)

    rows = []
    for name, s in seconds.items():
        versus = f"{seconds['torch'] / s:.2f}" if "torch" in seconds else "-"
        rows.append([name, f"{s * 1e3:.1f}", f"{n_tokens / s:,.0f}", versus])
    print(format_table(["step", "ms per step", "tokens/s", "tokens/s / torch"], rows))
    print("\n" + describe_machine())


if __name__ == "__main__":
    main()
