"""Figures, in one projector style: large fonts, thick lines, colour-blind-safe colours.

Every figure function returns a matplotlib ``Figure`` built without pyplot, so no GUI backend
is needed and no global figure state is touched; ``save_figure`` writes it atomically (to a
temporary file that is then renamed), so an interrupted run never leaves a broken image.
Colours are the Okabe-Ito palette (Okabe and Ito 2008), which stays distinguishable under the
common forms of colour blindness.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import matplotlib
from matplotlib.figure import Figure

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
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=PROJECTOR_STYLE["savefig.dpi"], bbox_inches="tight")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


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


# ----------------------------------------------------------------- long-context figures


def plot_passkey_heatmaps(results: dict[str, dict], trained_length: int, title: str | None = None):
    """Return one panel per setting of passkey accuracy: input length on x, key depth on y.

    ``results`` maps a setting name to the output of ``minitx.tasks.evaluate_passkey``. Cells
    hold the accuracy in percent; a dashed line marks the training length.
    """
    import numpy as np

    names = list(results)
    with matplotlib.rc_context(PROJECTOR_STYLE):
        fig = Figure(figsize=(5.5 * len(names) + 1.5, 5.5))
        axes = fig.subplots(1, len(names), squeeze=False)[0]
        for ax, name in zip(axes, names):
            result = results[name]
            lengths, depths = result["lengths"], result["depths"]
            accuracy = 100 * np.array(result["accuracy"]).T  # (depths, lengths)
            image = ax.imshow(accuracy, cmap="cividis", vmin=0, vmax=100, origin="upper", aspect="auto")
            for row in range(len(depths)):
                for column in range(len(lengths)):
                    value = accuracy[row, column]
                    ax.text(column, row, f"{value:.0f}", ha="center", va="center", fontsize=12,
                            color="black" if value > 50 else "white")
            ax.set_xticks(range(len(lengths)), [str(n) for n in lengths], rotation=45)
            ax.set_yticks(range(len(depths)), [f"{d:g}" for d in depths])
            inside = [i for i, n in enumerate(lengths) if n <= trained_length]
            if inside and inside[-1] < len(lengths) - 1:
                ax.axvline(inside[-1] + 0.5, color="#D55E00", linestyle="--", linewidth=3)
            ax.set_xlabel("input length (tokens)")
            ax.set_title(name)
            ax.grid(False)
        axes[0].set_ylabel("key depth (0 = start)")
        fig.colorbar(image, ax=list(axes), label="exact-match accuracy (%)")
        if title:
            fig.suptitle(title)
    return fig


def plot_passkey_by_length(results: dict[str, dict], trained_length: int, title: str | None = None):
    """Return a figure of passkey accuracy (mean over depths) against input length, one line per setting."""
    import numpy as np

    with matplotlib.rc_context(PROJECTOR_STYLE):
        fig = Figure(figsize=(9, 6))
        ax = fig.add_subplot()
        markers = "osD^v"
        for index, (name, result) in enumerate(results.items()):
            mean = 100 * np.array(result["accuracy"]).mean(axis=1)  # (lengths,)
            ax.plot(result["lengths"], mean, marker=markers[index % len(markers)], label=name)
        ax.axvline(trained_length, color="0.4", linestyle="--", linewidth=2, label=f"training length {trained_length}")
        ax.set_xscale("log", base=2)
        ax.set_ylim(-5, 105)
        ax.set_xlabel("input length (tokens)")
        ax.set_ylabel("passkey accuracy (%)")
        ax.set_title(title or "Passkey retrieval by input length")
        ax.legend()
        fig.tight_layout()
    return fig


def plot_self_extend_sweep(sweep: dict, metric_label: str, title: str | None = None, percent: bool = False):
    """Return a heatmap of a metric over group size G (rows) and window W (columns).

    ``sweep`` is the output of ``minitx.tasks.sweep_self_extend``. Cells whose ``max_length``
    is below the evaluated length are hatched when the sweep records that length.
    """
    import numpy as np
    from matplotlib.patches import Rectangle

    values = np.array(sweep["values"], dtype=float)  # (G, W)
    shown = 100 * values if percent else values
    with matplotlib.rc_context(PROJECTOR_STYLE):
        fig = Figure(figsize=(1.6 * len(sweep["windows"]) + 3, 1.1 * len(sweep["group_sizes"]) + 2.5))
        ax = fig.add_subplot()
        image = ax.imshow(shown, cmap="cividis", aspect="auto", vmin=0 if percent else None, vmax=100 if percent else None)
        middle = (np.nanmin(shown) + np.nanmax(shown)) / 2
        length = sweep.get("length")
        for row in range(shown.shape[0]):
            for column in range(shown.shape[1]):
                value = shown[row, column]
                text = f"{value:.0f}" if percent else f"{value:.2f}"
                ax.text(column, row, text, ha="center", va="center", fontsize=12,
                        color="black" if value > middle else "white")
                if length is not None and sweep["max_length"][row][column] < length:
                    ax.add_patch(Rectangle((column - 0.5, row - 0.5), 1, 1, fill=False, hatch="//",
                                           edgecolor="0.6", linewidth=0))
        ax.set_xticks(range(len(sweep["windows"])), [str(w) for w in sweep["windows"]])
        ax.set_yticks(range(len(sweep["group_sizes"])), [str(g) for g in sweep["group_sizes"]])
        ax.set_xlabel("neighbour window W (tokens)")
        ax.set_ylabel("group size G")
        ax.grid(False)
        fig.colorbar(image, ax=ax, label=metric_label)
        ax.set_title(title or f"Self-Extend: {metric_label}")
    return fig
