"""Every file in the repository's ``figures/`` folder, built from seeded code.

``build_figures(out_dir)`` writes each figure as PNG and SVG in the light theme, a PNG in the
dark theme (``NAME-dark.png``) and the rotating-pair GIF. Files are written atomically and
without dates, so a rerun with the same matplotlib rewrites the same bytes. ``minitx figures``
on the command line calls it.

Figures that need a trained model are listed in ``CHECKPOINT_FIGURES`` and skipped while the
package ships no checkpoint; ``build_figures`` reports each skip with its reason. The
long-context study on the shipped checkpoints (``minitx.long_context``) writes the files in
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

# Figures of trained models still to draw: attention maps per layer and head.
CHECKPOINT_FIGURES = ("attention_maps",)

# Written by minitx.long_context.run_long_context_study: perplexity by length for RoPE,
# sinusoidal and Self-Extend, the passkey heatmap, and the G x W sweeps.
LONG_CONTEXT_FILES = (
    "long_context.json",
    "passkey_by_length.png",
    "passkey_heatmap.png",
    "perplexity_by_length.png",
    "self_extend_sweep_passkey.png",
    "self_extend_sweep_perplexity.png",
)


def load_shipped_model(name: str):
    """Return the shipped trained model ``name``, or None while none is packaged.

    TODO: load the checkpoints shipped under minitx/checkpoints/ here (``minitx.load_pretrained``),
    then draw CHECKPOINT_FIGURES in ``build_figures`` with ``plotting.plot_attention_maps``.
    """
    return None


def build_figures(out_dir, themes=("light", "dark"), long_context: bool = True) -> dict[str, list]:
    """Write every figure into ``out_dir``; return {"written": [paths], "skipped": [(name, reason)]}."""
    out_dir = Path(out_dir)
    written, skipped = [], []
    for name, make in FIGURES.items():
        for theme in themes:
            fig = make(theme)
            suffixes = (".png", ".svg") if theme == "light" else (".png",)
            stem = name if theme == "light" else f"{name}-{theme}"
            for suffix in suffixes:
                written.append(plotting.save_figure(fig, out_dir / f"{stem}{suffix}"))
                log.info("wrote %s", written[-1])
    for name, save in ANIMATIONS.items():
        written.append(save(out_dir / f"{name}.gif"))
        log.info("wrote %s", written[-1])

    if long_context:
        from .long_context import run_long_context_study

        run_long_context_study(out_dir, progress=False, echo=log.info)
        written.extend(out_dir / name for name in LONG_CONTEXT_FILES)
    else:
        skipped.append(("the long-context study", "turned off (long_context=False)"))

    if load_shipped_model("rope") is None:
        for name in CHECKPOINT_FIGURES:
            skipped.append((name, "needs a shipped trained checkpoint, and none is installed"))
            log.info("skipped %s: no shipped checkpoint", name)
    return {"written": written, "skipped": skipped}


__all__ = ["ANIMATIONS", "CHECKPOINT_FIGURES", "FIGURES", "build_figures", "load_shipped_model"]
