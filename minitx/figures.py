"""Every file in the repository's ``figures/`` folder, built from seeded code.

``build_figures(out_dir)`` writes each figure as PNG and SVG in the light theme, a PNG in the
dark theme (``NAME-dark.png``) and the rotating-pair GIF. Files are written atomically and
without dates, so a rerun with the same matplotlib rewrites the same bytes. ``minitx figures``
on the command line calls it.

Figures of trained models are listed in ``CHECKPOINT_FIGURES``: the attention maps of the
shipped ``char-rope`` model on ``ATTENTION_PASSAGE``. If the checkpoint is missing from the
installed package, ``build_figures`` skips them and reports the reason. The long-context study on the shipped checkpoints (``minitx.long_context``) writes the files in
``LONG_CONTEXT_FILES``; it takes minutes, so ``long_context=False`` leaves it out.
"""

from __future__ import annotations

import logging
from pathlib import Path

from . import plotting

log = logging.getLogger(__name__)

# name -> function(theme) returning a Figure; all inputs are fixed, so the output is too.
FIGURES = {
    "rope_rotations": lambda theme: plotting.plot_rope_rotations(theme=theme),
    "rope_score_by_distance": lambda theme: plotting.plot_rope_score_by_distance(theme=theme),
    "sinusoidal_table": lambda theme: plotting.plot_sinusoidal_table(theme=theme),
    "self_extend_positions": lambda theme: plotting.plot_self_extend_positions(theme=theme),
    "self_extend_positions_small": lambda theme: plotting.plot_self_extend_positions(
        T=10, group_size=2, window=4, trained_length=6, theme=theme),
}

ANIMATIONS = {"rope_rotation": plotting.save_rope_animation}

# A 128-character passage of the held-out tenth of the corpus (Python 3.11's pydoc topics), one
# training length of char-rope. It is fixed here rather than cut from the corpus at run time
# because the corpus text changes with the Python version, and the figure should not.
ATTENTION_PASSAGE = (
    "   setdefault(key[, default])\n\n"
    "      If *key* is in the dictionary, return its value.  If not, insert\n"
    "      *key* with a value o"
)
ATTENTION_MODEL = "char-rope"


def plot_shipped_attention_maps(model, tokenizer, theme: str = "light"):
    """Draw the attention maps of ``model`` on ``ATTENTION_PASSAGE``, one panel per layer and head."""
    from .inspection import attention_maps

    tokens = tokenizer.encode(ATTENTION_PASSAGE)  # (T,)
    probs = attention_maps(model, tokens)[:, 0]  # (n_layer, NH, T, T)
    L = model.config.context_length
    title = f"{ATTENTION_MODEL} attention on {len(tokens)} held-out characters (trained at L = {L})"
    return plotting.plot_attention_maps(probs, title=title, theme=theme)


# name -> function(model, tokenizer, theme) returning a Figure of the shipped ATTENTION_MODEL.
CHECKPOINT_FIGURES = {"char_rope_attention": plot_shipped_attention_maps}

# Written by minitx.long_context.run_long_context_study: perplexity by length for RoPE,
# sinusoidal and Self-Extend, the passkey heatmap, and the G x W sweeps.
LONG_CONTEXT_FILES = (
    "long_context.json",
    "passkey_answer_attention.png",
    "passkey_by_length.png",
    "passkey_heatmap.png",
    "perplexity_by_length.png",
    "self_extend_sweep_passkey.png",
    "self_extend_sweep_perplexity.png",
)


def load_shipped_model(name: str):
    """Return (model, tokenizer) of the shipped checkpoint ``name``, or None if it is not installed."""
    from .recipes import load_pretrained

    try:
        return load_pretrained(name)
    except FileNotFoundError as error:
        log.warning("failed to load the shipped model %s: %s", name, error)
        return None


def _save_themes(fig_for_theme, name: str, out_dir: Path, themes) -> list[Path]:
    """Write ``NAME.png`` and ``NAME.svg`` in the light theme and ``NAME-THEME.png`` in the others."""
    written = []
    for theme in themes:
        fig = fig_for_theme(theme)
        suffixes = (".png", ".svg") if theme == "light" else (".png",)
        stem = name if theme == "light" else f"{name}-{theme}"
        for suffix in suffixes:
            written.append(plotting.save_figure(fig, out_dir / f"{stem}{suffix}"))
            log.info("wrote %s", written[-1])
    return written


def build_figures(out_dir, themes=("light", "dark"), long_context: bool = True) -> dict[str, list]:
    """Write every figure into ``out_dir``; return {"written": [paths], "skipped": [(name, reason)]}."""
    out_dir = Path(out_dir)
    written, skipped = [], []
    for name, make in FIGURES.items():
        written.extend(_save_themes(make, name, out_dir, themes))
    for name, save in ANIMATIONS.items():
        written.append(save(out_dir / f"{name}.gif"))
        log.info("wrote %s", written[-1])

    if long_context:
        from .long_context import run_long_context_study

        run_long_context_study(out_dir, progress=False, echo=log.info)
        written.extend(out_dir / name for name in LONG_CONTEXT_FILES)
    else:
        skipped.append(("the long-context study", "turned off (long_context=False)"))

    shipped = load_shipped_model(ATTENTION_MODEL)
    for name, make in CHECKPOINT_FIGURES.items():
        if shipped is None:
            skipped.append((name, f"needs the shipped checkpoint {ATTENTION_MODEL}, which is not installed"))
            log.info("skipped %s: no shipped checkpoint %s", name, ATTENTION_MODEL)
            continue
        model, tokenizer = shipped
        written.extend(_save_themes(lambda theme: make(model, tokenizer, theme), name, out_dir, themes))
    return {"written": written, "skipped": skipped}


__all__ = ["ANIMATIONS", "ATTENTION_MODEL", "ATTENTION_PASSAGE", "CHECKPOINT_FIGURES", "FIGURES", "build_figures",
           "load_shipped_model", "plot_shipped_attention_maps"]
