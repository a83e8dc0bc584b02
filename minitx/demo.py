"""The main job: train RoPE and sinusoidal models, then measure them past the training length.

Steps, each printed as it runs:
1. Train a RoPE model and a sinusoidal model of the same size on the default corpus at a
   short context L (128 characters by default).
2. Switch the RoPE model to Self-Extend with no training (``with_position``).
3. Evaluate validation perplexity at 1x, 2x, 4x and 8x L for all three and print the table.
4. Write the checkpoints, a JSON of the numbers and a perplexity-by-length plot.
5. Continue a validation passage longer than L with the Self-Extend model.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path


from ._checks import check_int
from .checkpoint import atomic_write
from .config import ModelConfig
from .data import CharTokenizer, load_default_corpus, split_train_val
from .generate import generate
from .model import TransformerLM
from .plotting import plot_perplexity_by_length, save_figure
from .positions import SelfExtend
from .tasks import perplexity_by_length
from .train import TrainConfig, train

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class DemoSettings:
    """Sizes of the demo run; ``quick()`` is the seconds-long version used by the tests."""

    context_length: int = 128
    n_layer: int = 3
    n_head: int = 4
    n_embd: int = 96
    steps: int = 800
    batch_size: int = 16
    eval_interval: int = 200
    multiples: tuple = (1, 2, 4, 8)
    eval_tokens: int = 8192
    group_size: int = 16
    window: int = 32
    new_tokens: int = 200
    seed: int = 0

    def __post_init__(self):
        # Fail before training, not after it: build what the run will build later.
        ModelConfig(1, self.context_length, n_layer=self.n_layer, n_head=self.n_head, n_embd=self.n_embd)
        TrainConfig(steps=self.steps, batch_size=self.batch_size, eval_interval=self.eval_interval, seed=self.seed)
        SelfExtend(self.n_embd // self.n_head, self.group_size, self.window)
        for name in ("eval_tokens", "new_tokens"):
            check_int(name, getattr(self, name), minimum=1)

    @classmethod
    def quick(cls) -> "DemoSettings":
        return cls(context_length=32, n_layer=1, n_head=2, n_embd=32, steps=30, batch_size=8,
                   eval_interval=15, eval_tokens=1024, group_size=16, window=8, new_tokens=40)


def run_demo(out_dir, settings: DemoSettings = DemoSettings(), progress: bool = True, echo=print) -> dict:
    """Run the main job, writing into ``out_dir``; return the perplexity table as a dict."""
    started = time.perf_counter()
    out_dir = Path(out_dir)
    L = settings.context_length

    text = load_default_corpus()
    tokenizer = CharTokenizer.from_text(text)
    train_ids, val_ids = split_train_val(tokenizer.encode(text))
    echo(f"Corpus: the CPython language reference topics (pydoc_data.topics), {len(text):,} characters, "
         f"{tokenizer.vocab_size} distinct; {len(train_ids):,} for training, {len(val_ids):,} held out.")

    train_config = TrainConfig(steps=settings.steps, batch_size=settings.batch_size,
                               eval_interval=settings.eval_interval, seed=settings.seed)
    models = {}
    for position in ("rope", "sinusoidal"):
        config = ModelConfig(tokenizer.vocab_size, L, n_layer=settings.n_layer, n_head=settings.n_head,
                             n_embd=settings.n_embd, position=position)
        model = TransformerLM(config, seed=settings.seed)
        echo(f"\nTraining a {position} model: {model.n_params:,} parameters, context {L}, "
             f"{settings.steps} steps of {settings.batch_size} x {L} tokens.")
        history = train(model, train_ids, val_ids, train_config, tokenizer=tokenizer,
                        checkpoint_path=out_dir / f"{position}.npz", progress=progress, description=position)
        echo(f"  validation loss {history['val_loss'][-1]:.3f} nats, {history['tokens_per_second']:,.0f} tokens/s")
        models[position] = model

    self_extend = SelfExtend(models["rope"].config.head_dim, settings.group_size, settings.window)
    models["rope + self-extend"] = models["rope"].with_position(self_extend)
    echo(f"\nSelf-Extend with group_size={settings.group_size}, window={settings.window}: "
         f"relative positions stay below {L} up to {self_extend.max_length(L)} tokens.")

    lengths = [m * L for m in settings.multiples]
    table = {}
    for name in ("sinusoidal", "rope", "rope + self-extend"):
        table[name] = perplexity_by_length(models[name], val_ids, lengths, settings.eval_tokens, progress=progress)

    header = f"{'input length':>14} | " + " | ".join(f"{name:>18}" for name in table)
    lines = [header, "-" * len(header)]
    for N, multiple in zip(lengths, settings.multiples):
        lines.append(f"{f'{N} ({multiple}x L)':>14} | " + " | ".join(f"{table[name][N]:>18.3f}" for name in table))
    echo("\nValidation perplexity by input length (lower is better):\n" + "\n".join(lines))

    figure_path = save_figure(plot_perplexity_by_length(table, L, title=f"Character model trained at {L} tokens"),
                              out_dir / "perplexity_by_length.png")
    results = {
        "trained_length": L,
        "lengths": lengths,
        "perplexity": {name: {str(n): p for n, p in by_length.items()} for name, by_length in table.items()},
        "self_extend": {"group_size": settings.group_size, "window": settings.window},
        "settings": dataclasses.asdict(settings),
    }
    json_path = atomic_write(out_dir / "results.json", lambda f: f.write(json.dumps(results, indent=2).encode()))

    prompt_length = min(2 * L, len(val_ids) - 1)
    prompt = val_ids[:prompt_length]
    tokens = generate(models["rope + self-extend"], prompt, settings.new_tokens, temperature=0.8,
                      top_k=10, seed=settings.seed)
    echo(f"\nSelf-Extend continuation of a {prompt_length}-character prompt ({prompt_length // L}x the training context):")
    echo(f"--- prompt (last {min(200, prompt_length)} characters) ---\n" + tokenizer.decode(prompt[-200:]))
    echo("--- continuation ---\n" + tokenizer.decode(tokens[prompt_length:]))

    elapsed = time.perf_counter() - started
    echo(f"\nWrote {out_dir / 'rope.npz'}, {out_dir / 'sinusoidal.npz'}, {json_path} and {figure_path}.")
    echo(f"Total time {elapsed:.0f} s.")
    results["seconds"] = elapsed
    return results
