"""Long context in miniature: the Self-Extend experiment (Jin et al. 2024, arXiv 2401.01325) on
the shipped checkpoints, as tables, JSON and figures.

``run_long_context_study(out_dir)`` is the one entry point that regenerates every long-context
figure: it loads the four shipped models, evaluates them past their training length L as
plain RoPE, as RoPE with Self-Extend (same weights, no training) and as the sinusoidal
counterpart, and writes

- ``passkey_heatmap.png`` and ``passkey_by_length.png``: passkey accuracy by length and depth;
- ``passkey_answer_attention.png``: where the first layer's copying heads look while the answer
  is predicted, with plain RoPE and with Self-Extend;
- ``perplexity_by_length.png``: perplexity of the character models by length;
- ``self_extend_sweep_passkey.png`` and ``self_extend_sweep_perplexity.png``: the G x W study;
- ``long_context.json``: every number behind the figures, and the settings used.

The formatting helpers print the same tables the command line shows.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from .checkpoint import atomic_write
from .positions import SelfExtend
from .recipes import corpus_and_tokenizer, load_pretrained
from .tasks import evaluate_passkey, perplexity_by_length, sample_prompts, sweep_self_extend

#: Self-Extend settings of the study; both keep 4L inside max_length (see SelfExtend.max_length).
PASSKEY_GROUP_SIZE, PASSKEY_WINDOW = 8, 64
#: The smallest grouping, used at L to show that merging pairs of positions already breaks retrieval.
ANALYSIS_GROUP_SIZE = 2
CHAR_GROUP_SIZE, CHAR_WINDOW = 16, 32
MULTIPLES = (1, 2, 4, 8)
DEPTHS = (0.0, 0.25, 0.5, 0.75, 1.0)
SWEEP_GROUP_SIZES = (2, 4, 8, 16)
SWEEP_WINDOWS = (16, 32, 64, 128)


def with_self_extend(model, group_size: int, window: int):
    """Return ``model`` switched to Self-Extend with the given G and W; the weights are unchanged."""
    c = model.config
    return model.with_position(SelfExtend(c.head_dim, group_size, window, base=c.base, pairing=c.pairing))


def format_passkey_table(result: dict, trained_length: int) -> str:
    """Return the accuracy table of ``evaluate_passkey``: one row per length, one column per depth."""
    depths = result["depths"]
    header = f"{'length':>14} | " + " | ".join(f"d={d:<4g}" for d in depths) + " |   mean"
    lines = [header, "-" * len(header)]
    for N, row in zip(result["lengths"], result["accuracy"]):
        label = f"{N} ({N / trained_length:g}x L)"
        cells = " | ".join(f"{100 * value:5.0f}%" for value in row)
        lines.append(f"{label:>14} | {cells} | {100 * np.mean(row):5.1f}%")
    return "\n".join(lines)


def format_by_length_table(columns: dict[str, dict[int, float]], trained_length: int, fmt: str = "{:.3f}") -> str:
    """Return a table with one row per length and one column per setting."""
    lengths = sorted({N for values in columns.values() for N in values})
    width = max(18, *(len(name) for name in columns))
    header = f"{'length':>14} | " + " | ".join(f"{name:>{width}}" for name in columns)
    lines = [header, "-" * len(header)]
    for N in lengths:
        cells = " | ".join(f"{fmt.format(values[N]) if N in values else '-':>{width}}" for values in columns.values())
        lines.append(f"{f'{N} ({N / trained_length:g}x L)':>14} | {cells}")
    return "\n".join(lines)


def format_sweep_table(sweep: dict, fmt: str = "{:.3f}") -> str:
    """Return the G x W table of ``sweep_self_extend``: one row per G, one column per W."""
    corner = "G \\ W"
    header = f"{corner:>6} | " + " | ".join(f"{w:>8}" for w in sweep["windows"])
    lines = [header, "-" * len(header)]
    for G, row in zip(sweep["group_sizes"], sweep["values"]):
        lines.append(f"{G:>6} | " + " | ".join(f"{fmt.format(v):>8}" for v in row))
    return "\n".join(lines)


def write_json(path, payload: dict) -> Path:
    """Write ``payload`` as indented JSON through a temporary file and a rename."""
    return atomic_write(path, lambda handle: handle.write(json.dumps(payload, indent=2).encode()))


def run_long_context_study(out_dir="figures", n_keys: int = 10, progress: bool = True, echo=print) -> dict:
    """Evaluate the shipped models past L, print the tables and write JSON and figures to ``out_dir``."""
    from .plotting import (plot_answer_attention, plot_passkey_by_length, plot_passkey_heatmaps,
                           plot_perplexity_by_length, plot_self_extend_sweep, save_figure)

    started = time.perf_counter()
    out_dir = Path(out_dir)
    results: dict = {"n_keys": n_keys, "depths": list(DEPTHS)}

    # Passkey retrieval: RoPE, RoPE + Self-Extend and sinusoidal, at 1x .. 8x L.
    rope, tokenizer = load_pretrained("passkey-rope")
    sinusoidal, _ = load_pretrained("passkey-sinusoidal")
    L = rope.config.context_length
    lengths = [m * L for m in MULTIPLES]
    self_extend_name = f"rope + self-extend (G={PASSKEY_GROUP_SIZE}, W={PASSKEY_WINDOW})"
    settings = {
        "rope": rope,
        self_extend_name: with_self_extend(rope, PASSKEY_GROUP_SIZE, PASSKEY_WINDOW),
        "sinusoidal": sinusoidal,
    }
    passkey = {}
    for name, model in settings.items():
        passkey[name] = evaluate_passkey(model, tokenizer, lengths, DEPTHS, n_keys=n_keys, progress=progress)
        echo(f"\nPasskey accuracy, {name} (trained at L={L}, {n_keys} keys per cell):")
        echo(format_passkey_table(passkey[name], L))
    results["passkey"] = {"trained_length": L, "results": passkey}
    # Where retrieval breaks: attention from the first-digit prediction onto the key, mean over keys.
    attention = {}
    for name in ("rope", self_extend_name):
        attention[name] = {}
        for N in lengths[:3]:
            prompts = sample_prompts(N - 6, 0.5, 4, seed=0)
            mass = np.mean([attention_to_key(settings[name], tokenizer, prompt) for prompt in prompts], axis=0)
            attention[name][str(N)] = mass.tolist()  # (n_layer, NH)
    echo("\nAttention from the first-digit prediction onto the key (depth 0.5), max over heads per layer:")
    for name, by_length in attention.items():
        cells = ", ".join(f"{N}: " + " ".join(f"{max(layer):.2f}" for layer in mass) for N, mass in by_length.items())
        echo(f"  {name:>32} | {cells}")
    results["passkey"]["attention_to_key"] = attention

    # Which answer tokens fail, and what the copying heads of the first layer look at.
    analysis = {
        "rope at L": (rope, L),
        f"self-extend (G={ANALYSIS_GROUP_SIZE}, W={PASSKEY_WINDOW}) at L": (
            with_self_extend(rope, ANALYSIS_GROUP_SIZE, PASSKEY_WINDOW), L),
        f"self-extend (G={PASSKEY_GROUP_SIZE}, W={PASSKEY_WINDOW}) at 4L": (settings[self_extend_name], 4 * L),
    }
    token_accuracy, panels = {}, {}
    for name, (model, N) in analysis.items():
        prompts = sample_prompts(N - 6, 0.5, n_keys, seed=0)
        token_accuracy[name] = answer_token_accuracy(model, tokenizer, prompts).tolist()
        panels[name], sentence = answer_attention(model, tokenizer, prompts[0])
        answer = prompts[0].answer  # the same key in every setting: keys depend only on the seed
    echo("\nTeacher-forced accuracy of each answer token (space, digits 1 to 5), depth 0.5:")
    for name, values in token_accuracy.items():
        echo(f"  {name:>32} | " + " ".join(f"{value:4.0%}" for value in values))
    first_rows = panels["rope at L"][0]  # (NH, 6, len(sentence)): layer 0 under plain RoPE
    digits = [index for index, ch in enumerate(sentence) if ch.isdigit()]
    heads = sorted(np.argsort(first_rows[:, :, digits].sum(axis=(1, 2)))[-2:].tolist())  # the two copying heads
    results["passkey"]["answer_token_accuracy"] = token_accuracy
    results["passkey"]["answer_attention_heads"] = {"layer": 0, "heads": heads}
    save_figure(plot_answer_attention(panels, sentence, answer, heads, layer=0,
                                      title="Where the answer looks: first-layer heads that copy the key, depth 0.5"),
                out_dir / "passkey_answer_attention.png")

    save_figure(plot_passkey_heatmaps(passkey, L, title=f"Passkey retrieval, trained at L={L}"),
                out_dir / "passkey_heatmap.png")
    save_figure(plot_passkey_by_length(passkey, L, title=f"Passkey retrieval, trained at L={L}"),
                out_dir / "passkey_by_length.png")

    # Perplexity of the character models.
    char_rope, _ = load_pretrained("char-rope")
    char_sinusoidal, _ = load_pretrained("char-sinusoidal")
    _, _, val_ids = corpus_and_tokenizer()
    L_char = char_rope.config.context_length
    char_lengths = [m * L_char for m in MULTIPLES]
    char_settings = {
        "sinusoidal": char_sinusoidal,
        "rope": char_rope,
        f"rope + self-extend (G={CHAR_GROUP_SIZE}, W={CHAR_WINDOW})": with_self_extend(char_rope, CHAR_GROUP_SIZE, CHAR_WINDOW),
    }
    perplexity = {name: perplexity_by_length(model, val_ids, char_lengths, progress=progress)
                  for name, model in char_settings.items()}
    echo(f"\nValidation perplexity of the character models (trained at L={L_char}):")
    echo(format_by_length_table(perplexity, L_char))
    results["perplexity"] = {"trained_length": L_char,
                             "results": {name: {str(n): p for n, p in values.items()} for name, values in perplexity.items()}}
    save_figure(plot_perplexity_by_length(perplexity, L_char, title=f"Character models, trained at L={L_char}"),
                out_dir / "perplexity_by_length.png")

    # The G x W study at 4L: passkey accuracy (mean over depths) and perplexity.
    sweep_length = 4 * L
    passkey_sweep = sweep_self_extend(
        rope, SWEEP_GROUP_SIZES, SWEEP_WINDOWS, progress=progress,
        metric=lambda model: np.mean(evaluate_passkey(model, tokenizer, [sweep_length], DEPTHS, n_keys=n_keys)["accuracy"]),
    )
    passkey_sweep["length"] = sweep_length
    echo(f"\nSelf-Extend G x W, passkey accuracy at {sweep_length} tokens (4x L), mean over depths:")
    echo(format_sweep_table(passkey_sweep, "{:.0%}"))
    save_figure(plot_self_extend_sweep(passkey_sweep, f"passkey accuracy at {sweep_length} (%)", percent=True,
                                       title=f"Self-Extend G x W: passkey at {sweep_length} tokens"),
                out_dir / "self_extend_sweep_passkey.png")

    char_sweep_length = 4 * L_char
    perplexity_sweep = sweep_self_extend(
        char_rope, SWEEP_GROUP_SIZES, SWEEP_WINDOWS, progress=progress,
        metric=lambda model: perplexity_by_length(model, val_ids, [char_sweep_length])[char_sweep_length],
    )
    perplexity_sweep["length"] = char_sweep_length
    echo(f"\nSelf-Extend G x W, perplexity at {char_sweep_length} tokens (4x L) of the character model:")
    echo(format_sweep_table(perplexity_sweep))
    save_figure(plot_self_extend_sweep(perplexity_sweep, f"perplexity at {char_sweep_length}",
                                       title=f"Self-Extend G x W: perplexity at {char_sweep_length} tokens"),
                out_dir / "self_extend_sweep_perplexity.png")
    results["sweep"] = {"passkey": passkey_sweep, "perplexity": perplexity_sweep}

    path = write_json(out_dir / "long_context.json", results)
    echo(f"\nWrote {path} and the figures in {out_dir} ({time.perf_counter() - started:.0f} s).")
    return results


def attention_to_key(model, tokenizer, prompt) -> np.ndarray:
    """Return the (n_layer, NH) attention weight that the first-digit prediction puts on the key.

    The model reads the prompt and the space that starts the answer; from that last position
    it must predict the first digit, so an induction-style lookup there has to attend to the
    key. The weight is summed over both copies of the key in the key sentence. A head that
    puts most of its weight there at L and near none at 4L shows where retrieval breaks. The
    weights come from ``minitx.attention_weights`` on each layer's q and k, recomputed from the
    input that the model's forward leaves in each attention projection.
    """
    from .attention import attention_weights

    tokens = tokenizer.encode(prompt.text + " ")[None, :]  # (1, T)
    model.forward(tokens, extrapolate=True)
    first = prompt.key_start + len("The pass key is ")
    second = prompt.text.index(prompt.key, first + len(prompt.key))
    key_positions = np.concatenate([np.arange(first, first + len(prompt.key)),
                                    np.arange(second, second + len(prompt.key))])
    weights = []
    for block in model.blocks:
        attn = block.attn
        q, k, _ = attn.project_qkv(attn.c_attn.x)  # (1, T, C) -> (1, NH, T, hs) each, not rotated
        position = model.position if model.position.kind == "rotary" else None
        probs = attention_weights(q[:, :, -1:], k, position=position)  # (1, NH, 1, T)
        weights.append(probs[0, :, 0, key_positions].sum(axis=0))  # (10, NH) -> (NH,)
    model._dlogits = None
    return np.array(weights)


def answer_attention(model, tokenizer, prompt) -> tuple[np.ndarray, str]:
    """Return the attention from the answer predictions onto the key sentence, and that sentence.

    The model reads the prompt and its answer (teacher forcing). The query rows are the six
    positions that predict the six answer tokens: the last prompt character, the space and the
    first four digits. The key columns are the characters of the key sentence. Returns
    (weights, sentence) with weights of shape (n_layer, NH, 6, len(sentence)). A head that
    copies the key puts row r's weight on the key digit that answer token r must repeat.
    """
    from .inspection import attention_maps

    tokens = tokenizer.encode(prompt.text + prompt.answer)[None, :-1]  # (1, N + 5)
    N = prompt.length
    start = prompt.key_start
    end = prompt.text.index(" is the pass key.", start) + len(" is the pass key.")
    maps = attention_maps(model, tokens, extrapolate=True)  # (n_layer, 1, NH, T, T)
    model._dlogits = None
    return maps[:, 0, :, N - 1:, start:end], prompt.text[start:end]


def answer_token_accuracy(model, tokenizer, prompts, batch_size: int = 8) -> np.ndarray:
    """Return the (6,) share of prompts whose answer token r is predicted right, with teacher forcing.

    Exact match needs all six; this shows which of them fail. Token 0 is the space before the
    key, tokens 1 to 5 its digits.
    """
    from .tasks.passkey import score_prompts

    prompts = list(prompts)
    if not prompts:
        raise ValueError("prompts is empty. Pass at least one prompt, for example sample_prompts(250, 0.5, 10).")
    predicted = score_prompts(model, tokenizer, prompts, batch_size)
    right = [[a == b for a, b in zip(answer, prompt.answer)] for answer, prompt in zip(predicted, prompts)]
    return np.mean(right, axis=0)  # (n_prompts, 6) -> (6,)
