"""Figures, in one projector style: large fonts, thick lines, colour-blind-safe colours.

Every figure function returns a matplotlib ``Figure`` built without pyplot. No GUI backend is
needed and no global figure state is touched. ``save_figure`` writes it atomically (to a
temporary file that is then renamed), so an interrupted run never leaves a broken image.
Colours are the Okabe-Ito palette (Okabe and Ito 2008), which stays distinguishable under the
common forms of colour blindness.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
from matplotlib.figure import Figure

from ._files import atomic_write

OKABE_ITO = ["#E69F00", "#56B4E9", "#009E73", "#0072B2", "#D55E00", "#CC79A7", "#F0E442", "#000000"]

PROJECTOR_STYLE = {
    "font.size": 15,
    "axes.titlesize": 17,
    "axes.labelsize": 16,
    "legend.fontsize": 14,
    "xtick.labelsize": 14,
    "ytick.labelsize": 14,
    "lines.linewidth": 3.0,
    "lines.markersize": 9,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.prop_cycle": matplotlib.cycler(color=OKABE_ITO),
    "figure.dpi": 100,
    "savefig.dpi": 150,
    "savefig.bbox": "tight",
}


def save_figure(fig, path) -> Path:
    """Write ``fig`` to ``path`` (format from the suffix) through a temporary file and a rename."""
    path = Path(path)
    fmt = path.suffix.lstrip(".") or "png"
    return atomic_write(path, lambda handle: fig.savefig(handle, format=fmt, dpi=PROJECTOR_STYLE["savefig.dpi"], bbox_inches="tight"))


def plot_perplexity_by_length(results: dict[str, dict[int, float]], trained_length: int, title: str | None = None):
    """Return a figure of perplexity against input length, one line per position setting."""
    with matplotlib.rc_context(PROJECTOR_STYLE):
        fig = Figure(figsize=(9, 6))
        ax = fig.add_subplot()
        markers = "osD^v"
        for index, (name, by_length) in enumerate(results.items()):
            lengths = sorted(by_length)
            ax.plot(lengths, [by_length[n] for n in lengths], marker=markers[index % len(markers)], label=name)
        ax.axvline(trained_length, color="0.4", linestyle="--", linewidth=2, label=f"training length {trained_length}")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("input length (tokens)")
        ax.set_ylabel("validation perplexity")
        ax.set_title(title or "Perplexity by input length")
        ax.legend()
        fig.tight_layout()
    return fig
