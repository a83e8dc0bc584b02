"""Figures, in one projector style: large fonts, thick lines, colour-blind-safe colours.

Every figure function returns a matplotlib ``Figure`` built without pyplot, so no GUI backend
is needed and no global figure state is touched. ``save_figure`` writes it atomically, to a
temporary file that is then renamed, so an interrupted run never leaves a broken image.
Line colours are the Okabe-Ito palette (Okabe and Ito 2008), and heatmaps use viridis, both
distinguishable under the common forms of colour blindness. Each function takes
``theme="light"`` or ``theme="dark"``.

Attention-shaped figures put the query position on the rows (top to bottom) and the key
position on the columns (left to right), with both axes labelled.

Sections: style and saving; RoPE and sinusoidal positions; attention maps and the
Self-Extend position map; results (perplexity, passkey); the rotating-pair animation.
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

from ._files import atomic_write
from .positions import RoPE, SelfExtend, Sinusoidal

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
    # A fixed salt makes SVG element ids the same on every run, so regenerated files do not churn.
    "svg.hashsalt": "minitx",
    "image.cmap": "viridis",
}

# Dark slides use light text on a near-black background, and white replaces black in the palette.
THEMES = {
    "light": {"figure.facecolor": "white", "axes.facecolor": "white", "savefig.facecolor": "white"},
    "dark": {
        "figure.facecolor": "#111111",
        "axes.facecolor": "#111111",
        "savefig.facecolor": "#111111",
        "text.color": "#EEEEEE",
        "axes.labelcolor": "#EEEEEE",
        "axes.edgecolor": "#BBBBBB",
        "xtick.color": "#EEEEEE",
        "ytick.color": "#EEEEEE",
        "grid.color": "#BBBBBB",
        "legend.facecolor": "#222222",
        "legend.edgecolor": "#BBBBBB",
        "axes.prop_cycle": matplotlib.cycler(color=OKABE_ITO[:-1] + ["#FFFFFF"]),
    },
}

# Colour of masked (future) cells in attention-shaped heatmaps.
MASKED_COLOUR = {"light": "#DDDDDD", "dark": "#333333"}


@contextlib.contextmanager
def projector_style(theme: str = "light"):
    """Apply the projector style with the ``theme`` colours inside a ``with`` block."""
    if theme not in THEMES:
        raise ValueError(f"theme must be one of {tuple(THEMES)}, got {theme!r}.")
    with matplotlib.rc_context({**PROJECTOR_STYLE, **THEMES[theme]}):
        yield


def _foreground() -> str:
    """Return the text colour of the active theme."""
    return matplotlib.rcParams["text.color"]


def save_figure(fig, path) -> Path:
    """Write ``fig`` to ``path`` (format from the suffix) through a temporary file and a rename.

    PNG and SVG files carry no date or software version, so the same figure gives the same
    bytes on every run with the same matplotlib.
    """
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    metadata = None
    if fmt == "svg":
        metadata = {"Date": None, "Creator": None}
    elif fmt == "png":
        metadata = {"Software": None}

    def write(handle):
        with matplotlib.rc_context({"svg.hashsalt": PROJECTOR_STYLE["svg.hashsalt"]}):
            fig.savefig(handle, format=fmt, dpi=PROJECTOR_STYLE["savefig.dpi"], bbox_inches="tight",
                        facecolor=fig.get_facecolor(), metadata=metadata)

    return atomic_write(path, write)


def _label_attention_axes(ax, title: str | None = None) -> None:
    ax.set_xlabel("key position j")
    ax.set_ylabel("query position i")
    ax.grid(False)
    if title:
        ax.set_title(title)


# ----------------------------------------------------------------------------- positions


def plot_rope_rotations(head_dim: int = 16, positions=range(0, 9), pairs=(0, 1, 3), base: float = 10000.0,
                        theme: str = "light"):
    """Return one panel per frequency pair m: the pair (1, 0) rotated at each position p.

    Fast pairs (small m) turn by a large angle per position, slow pairs barely move, which is
    how RoPE gives every relative distance its own combination of angles.
    """
    rope = RoPE(head_dim, base=base)
    positions = np.asarray(list(positions))
    theta = rope.frequencies()
    unit = np.zeros((len(positions), head_dim))
    unit[:, 0::2] = 1.0  # every interleaved pair starts at (1, 0)
    rotated = rope.rotate(unit, positions)  # (P, hs)

    with projector_style(theme):
        fig = Figure(figsize=(4.6 * len(pairs), 5.2))
        colours = matplotlib.colormaps["viridis"](np.linspace(0, 0.9, len(positions)))
        circle = np.linspace(0, 2 * np.pi, 200)
        for panel, m in enumerate(pairs):
            ax = fig.add_subplot(1, len(pairs), panel + 1)
            ax.plot(np.cos(circle), np.sin(circle), color="0.6", linewidth=1.5)
            for index, p in enumerate(positions):
                x_a, x_b = rotated[index, 2 * m], rotated[index, 2 * m + 1]
                ax.annotate("", xy=(x_a, x_b), xytext=(0, 0),
                            arrowprops={"arrowstyle": "-|>", "color": colours[index], "lw": 3})
                ax.text(1.17 * x_a, 1.17 * x_b, str(p), ha="center", va="center", fontsize=12, color=colours[index])
            ax.set_xlim(-1.35, 1.35)
            ax.set_ylim(-1.35, 1.35)
            ax.set_aspect("equal")
            ax.set_xlabel(f"channel {2 * m}")
            ax.set_ylabel(f"channel {2 * m + 1}")
            ax.set_title(f"pair m={m}, θ={theta[m]:.3g} rad")
        fig.suptitle(f"RoPE turns each pair by p·θ_m (head_dim={head_dim}, positions {positions[0]}..{positions[-1]})")
        fig.tight_layout()
    return fig


def plot_rope_score_by_distance(head_dim: int = 64, max_distance: int = 512, base: float = 10000.0,
                                seed: int = 0, theme: str = "light"):
    """Return the score q_i . k_j against the distance i - j under RoPE.

    With q = k = all ones the score decays in an oscillating way as the distance grows (the
    long-term decay of RoFormer, section 3.4.3); random q and k show that the score is some
    function of the distance, not always a decaying one.
    """
    rope = RoPE(head_dim, base=base)
    distances = np.arange(max_distance + 1)
    rng = np.random.default_rng(seed)
    with projector_style(theme):
        fig = Figure(figsize=(10, 6))
        ax = fig.add_subplot()
        cases = [("q = k = ones", np.ones(head_dim), np.ones(head_dim))]
        cases += [(f"random q, k (seed {seed}, pair {n + 1})", rng.standard_normal(head_dim), rng.standard_normal(head_dim))
                  for n in range(2)]
        for label, q, k in cases:
            # Query at position d, key at 0: the score depends only on the distance d.
            q_rot = rope.rotate(np.tile(q, (len(distances), 1)), distances)  # (D, hs)
            k_rot = rope.rotate(k[None, :], np.array([0]))  # (1, hs)
            scores = q_rot @ k_rot[0] / np.sqrt(head_dim)  # (D,)
            ax.plot(distances, scores, label=label, linewidth=2.5)
        ax.set_xlabel("relative distance i − j (tokens)")
        ax.set_ylabel("score q·k / √hs")
        ax.set_title(f"RoPE score against distance (head_dim={head_dim}, base={base:g})")
        ax.legend(loc="upper right")
        fig.tight_layout()
    return fig


def plot_sinusoidal_table(T: int = 128, dim: int = 64, base: float = 10000.0, theme: str = "light"):
    """Return the sinusoidal table PE (positions x channels) beside its dot products PE(i).PE(j)."""
    table = Sinusoidal(dim, base=base).table(np.arange(T))  # (T, dim)
    gram = table @ table.T  # (T, T)
    with projector_style(theme):
        fig = Figure(figsize=(15, 6.5))
        ax = fig.add_subplot(1, 2, 1)
        image = ax.imshow(table, aspect="auto", cmap="viridis", vmin=-1, vmax=1, interpolation="nearest")
        ax.set_xlabel("channel (even: sin, odd: cos)")
        ax.set_ylabel("position p")
        ax.set_title(f"PE[p, channel], dim={dim}")
        ax.grid(False)
        fig.colorbar(image, ax=ax, shrink=0.85)

        ax = fig.add_subplot(1, 2, 2)
        image = ax.imshow(gram, cmap="viridis", interpolation="nearest")
        _label_attention_axes(ax, "PE(i)·PE(j): constant along diagonals")
        fig.colorbar(image, ax=ax, shrink=0.85)
        fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- attention


def plot_attention_maps(probs, layer_names=None, title: str | None = None, theme: str = "light"):
    """Return a grid of attention maps: one row per layer, one column per head.

    ``probs`` is (n_layer, NH, T, T) for a single sequence, or (NH, T, T) for one layer, as
    returned by ``minitx.inspection.attention_maps(model, tokens)[:, b]``. Masked (future)
    cells are drawn in grey; the colour scale is the probability, 0 to the largest value.
    """
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim == 3:
        probs = probs[None]
    if probs.ndim != 4 or probs.shape[-1] != probs.shape[-2]:
        raise ValueError(f"probs must be (n_layer, NH, T, T) or (NH, T, T), got shape {probs.shape}.")
    n_layer, NH, T, _ = probs.shape
    layer_names = layer_names or [f"layer {n}" for n in range(n_layer)]
    future = np.triu(np.ones((T, T), dtype=bool), k=1)

    with projector_style(theme):
        cmap = matplotlib.colormaps["viridis"].with_extremes(bad=MASKED_COLOUR[theme])
        fig = Figure(figsize=(3.8 * NH + 1.2, 3.8 * n_layer + 0.8), layout="constrained")
        axes = fig.subplots(n_layer, NH, squeeze=False)
        vmax = float(probs.max())
        for layer in range(n_layer):
            for head in range(NH):
                ax = axes[layer, head]
                image = ax.imshow(np.ma.masked_array(probs[layer, head], future), cmap=cmap, vmin=0,
                                  vmax=vmax, interpolation="nearest")
                _label_attention_axes(ax, f"{layer_names[layer]}, head {head}")
                if layer < n_layer - 1:
                    ax.set_xlabel("")
                if head > 0:
                    ax.set_ylabel("")
        fig.colorbar(image, ax=axes, shrink=0.8, label="attention probability")
        if title:
            fig.suptitle(title)
    return fig


def plot_self_extend_positions(T: int = 24, group_size: int = 3, window: int = 6, trained_length: int | None = None,
                               annotate: bool | None = None, theme: str = "light"):
    """Return plain RoPE's relative positions i - j beside Self-Extend's effective d(i, j).

    The orange line is the window edge: cells right of it (0 <= i - j < W, a band along the
    diagonal) are the neighbour region and keep plain RoPE positions, cells left of it are
    grouped. With ``trained_length`` L, cells whose position reaches L (never seen in
    training) are outlined in reddish purple.
    ``annotate`` writes each value in its cell (default: when T <= 16).
    """
    self_extend = SelfExtend(2, group_size, window)
    i = np.arange(T)[:, None]
    j = np.arange(T)[None, :]
    plain = np.where(j <= i, i - j, -1)
    grouped = self_extend.relative_positions(T)
    annotate = T <= 16 if annotate is None else annotate
    vmax = max(int(plain.max()), 1)

    with projector_style(theme):
        cmap = matplotlib.colormaps["viridis"].with_extremes(bad=MASKED_COLOUR[theme])
        fig = Figure(figsize=(15, 7), layout="constrained")
        axes = fig.subplots(1, 2)
        panels = [(plain, "plain RoPE: i − j\n(one region)"),
                  (grouped, f"Self-Extend: d(i, j), G={group_size}, W={window}")]
        for ax, (values, title) in zip(axes, panels):
            image = ax.imshow(np.ma.masked_less(values, 0), cmap=cmap, vmin=0, vmax=vmax, interpolation="nearest")
            _label_attention_axes(ax, title)
            if annotate:
                for (row, col), value in np.ndenumerate(values):
                    if value >= 0:
                        colour = "black" if value > 0.6 * vmax else "white"
                        ax.text(col, row, str(value), ha="center", va="center", fontsize=10, color=colour)
            if trained_length is not None:
                for row, col in zip(*np.nonzero(values >= trained_length)):
                    ax.add_patch(Rectangle((col - 0.5, row - 0.5), 1, 1, fill=False, edgecolor=OKABE_ITO[5],
                                           linewidth=2.5))
                ax.add_patch(Rectangle((0, 0), 0, 0, fill=False, edgecolor=OKABE_ITO[5], linewidth=2.5,
                                       label=f"position ≥ L={trained_length}"))  # legend entry only
                ax.legend(loc="upper right", fontsize=12)

        # The window boundary: in row i the cells j <= i - W are grouped, the rest neighbours.
        xs, ys = [], []
        for row in range(window, T):
            xs += [row - window + 0.5, row - window + 0.5]
            ys += [row - 0.5, row + 0.5]
        axes[1].plot(xs, ys, color=OKABE_ITO[4], linewidth=4, label="window edge")
        axes[1].legend(loc="upper right", fontsize=12)
        axes[1].set_title(f"Self-Extend: d(i, j), G={group_size}, W={window}\n"
                          "neighbour (i − j < W) right of the edge, grouped left")
        fig.colorbar(image, ax=axes, shrink=0.8, label="relative position seen by RoPE")
    return fig


# ----------------------------------------------------------------------------- results


def _plain_number_ticks(ax, values) -> None:
    """Put ticks on a log axis at exactly ``values``, labelled as plain integers (128, 256, ...)."""
    ax.xaxis.set_major_locator(FixedLocator(sorted(values)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:.0f}"))
    ax.xaxis.set_minor_locator(NullLocator())


def plot_perplexity_by_length(results: dict[str, dict[int, float]], trained_length: int, title: str | None = None,
                              theme: str = "light"):
    """Return a figure of perplexity against input length, one line per position setting."""
    with projector_style(theme):
        fig = Figure(figsize=(9, 6))
        ax = fig.add_subplot()
        markers = "osD^v"
        all_lengths = set()
        for index, (name, by_length) in enumerate(results.items()):
            lengths = sorted(by_length)
            all_lengths.update(lengths)
            ax.plot(lengths, [by_length[n] for n in lengths], marker=markers[index % len(markers)], label=name)
        ax.axvline(trained_length, color="0.5", linestyle="--", linewidth=2, label=f"training length {trained_length}")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        _plain_number_ticks(ax, all_lengths | {trained_length})
        ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:g}"))
        # Label the minor ticks 2, 3 and 5 (20, 30, 50, ...) so short ranges still get numbers.
        ax.yaxis.set_minor_formatter(FuncFormatter(lambda y, _: f"{y:g}" if f"{y:.0e}"[0] in "235" else ""))
        ax.set_xlabel("input length (tokens)")
        ax.set_ylabel("validation perplexity")
        ax.set_title(title or "Perplexity by input length")
        ax.legend()
        fig.tight_layout()
    return fig


def plot_benchmark(seconds: dict[str, dict[int, float]], title: str | None = None, theme: str = "light"):
    """Return run time against input length T on log-log axes, one line per implementation.

    ``seconds`` maps a label to {T: seconds per call}. A slope of 2 on these axes is the
    quadratic cost of attention.
    """
    with projector_style(theme):
        fig = Figure(figsize=(9, 6))
        ax = fig.add_subplot()
        markers = "osD^v"
        all_lengths = set()
        for index, (name, by_length) in enumerate(seconds.items()):
            lengths = sorted(by_length)
            all_lengths.update(lengths)
            ax.plot(lengths, [1e3 * by_length[n] for n in lengths], marker=markers[index % len(markers)], label=name)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        _plain_number_ticks(ax, all_lengths)
        ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:g}"))
        ax.set_xlabel("input length T (tokens)")
        ax.set_ylabel("time per call (ms)")
        ax.set_title(title or "Attention forward time")
        ax.legend()
        fig.tight_layout()
    return fig


def passkey_grid(accuracy, lengths=None, depths=None):
    """Return (grid, lengths, depths): accuracies as a (depths, lengths) array.

    ``accuracy`` is a dict {(length, depth): value}, a dict {length: {depth: value}}, or an
    array of shape (len(depths), len(lengths)) together with ``lengths`` and ``depths``.
    Missing combinations are NaN.
    """
    if isinstance(accuracy, dict):
        pairs = {}
        for key, value in accuracy.items():
            if isinstance(value, dict):
                pairs.update({(key, depth): v for depth, v in value.items()})
            else:
                pairs[tuple(key)] = value
        lengths = sorted({length for length, _ in pairs}) if lengths is None else list(lengths)
        depths = sorted({depth for _, depth in pairs}) if depths is None else list(depths)
        grid = np.array([[pairs.get((n, d), np.nan) for n in lengths] for d in depths], dtype=np.float64)
        return grid, lengths, depths
    grid = np.asarray(accuracy, dtype=np.float64)
    if lengths is None or depths is None or grid.shape != (len(depths), len(lengths)):
        raise ValueError(
            f"An accuracy array needs lengths and depths with shape (len(depths), len(lengths)); got array "
            f"shape {grid.shape}, {None if lengths is None else len(lengths)} lengths and "
            f"{None if depths is None else len(depths)} depths."
        )
    return grid, list(lengths), list(depths)


def plot_passkey_heatmap(accuracy, lengths=None, depths=None, trained_length: int | None = None,
                         title: str | None = None, theme: str = "light"):
    """Return the passkey retrieval accuracy as a heatmap: input length across, depth down.

    ``accuracy`` takes any form ``passkey_grid`` accepts; values are fractions in [0, 1].
    Depth is where the passkey sentence sits in the prompt, as a fraction (0 = start).
    """
    grid, lengths, depths = passkey_grid(accuracy, lengths, depths)
    with projector_style(theme):
        cmap = matplotlib.colormaps["viridis"].with_extremes(bad=MASKED_COLOUR[theme])
        fig = Figure(figsize=(1.3 * len(lengths) + 3.5, 0.8 * len(depths) + 2.5), layout="constrained")
        ax = fig.add_subplot()
        image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=0, vmax=1, aspect="auto", interpolation="nearest")
        for (row, col), value in np.ndenumerate(grid):
            if np.isfinite(value):
                ax.text(col, row, f"{value:.0%}", ha="center", va="center", fontsize=12,
                        color="black" if value > 0.6 else "white")
        ax.set_xticks(range(len(lengths)), [str(n) for n in lengths])
        ax.set_yticks(range(len(depths)), [f"{d:.0%}" if isinstance(d, float) and d <= 1 else str(d) for d in depths])
        ax.set_xlabel("input length (tokens)")
        ax.set_ylabel("passkey depth")
        ax.grid(False)
        title = title or "Passkey retrieval accuracy"
        if trained_length is not None:
            beyond = [index for index, n in enumerate(lengths) if n > trained_length]
            if beyond:
                ax.axvline(beyond[0] - 0.5, color=OKABE_ITO[4], linewidth=4)
                title += f"\n(right of the orange line: longer than L={trained_length})"
        ax.set_title(title)
        fig.colorbar(image, ax=ax, label="accuracy")
    return fig


# ----------------------------------------------------------------------------- animation


def save_rope_animation(path, head_dim: int = 8, n_positions: int = 24, pairs=(0, 1, 2), fps: int = 4,
                        theme: str = "light") -> Path:
    """Write a GIF of RoPE pairs turning as the position grows, one frame per position.

    Each panel is one frequency pair. The arrow is the pair (1, 0) rotated at the frame's
    position, and its faint trail shows the earlier positions. The file is written atomically.
    """
    from matplotlib.animation import PillowWriter
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    rope = RoPE(head_dim)
    positions = np.arange(n_positions)
    unit = np.zeros((n_positions, head_dim))
    unit[:, 0::2] = 1.0
    rotated = rope.rotate(unit, positions)  # (P, hs)
    theta = rope.frequencies()

    with projector_style(theme):
        fig = Figure(figsize=(4.2 * len(pairs), 4.8))
        FigureCanvasAgg(fig)
        circle = np.linspace(0, 2 * np.pi, 200)
        arrows, trails, axes = [], [], []
        for panel, m in enumerate(pairs):
            ax = fig.add_subplot(1, len(pairs), panel + 1)
            ax.plot(np.cos(circle), np.sin(circle), color="0.6", linewidth=1.5)
            (trail,) = ax.plot([], [], "o", color=OKABE_ITO[1], alpha=0.4, markersize=7)
            (arrow,) = ax.plot([], [], color=OKABE_ITO[4], linewidth=5)
            ax.set_xlim(-1.2, 1.2)
            ax.set_ylim(-1.2, 1.2)
            ax.set_aspect("equal")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"pair m={m}, θ={theta[m]:.3g}")
            arrows.append(arrow)
            trails.append(trail)
            axes.append(ax)
        label = fig.text(0.5, 0.02, "", ha="center", fontsize=16)
        fig.tight_layout(rect=(0, 0.07, 1, 1))

        # PillowWriter needs a file name, so the GIF is made in a scratch folder, then copied
        # to ``path`` atomically.
        with tempfile.TemporaryDirectory() as scratch:
            frames_file = Path(scratch) / "animation.gif"
            writer = PillowWriter(fps=fps)
            with writer.saving(fig, frames_file, dpi=80):
                for p in positions:
                    for arrow, trail, m in zip(arrows, trails, pairs):
                        arrow.set_data([0, rotated[p, 2 * m]], [0, rotated[p, 2 * m + 1]])
                        trail.set_data(rotated[: p + 1, 2 * m], rotated[: p + 1, 2 * m + 1])
                    label.set_text(f"position p = {p}")
                    writer.grab_frame(facecolor=fig.get_facecolor())
            return atomic_write(path, lambda handle: handle.write(frames_file.read_bytes()))


# ----------------------------------------------------------------- long-context figures


def plot_passkey_heatmaps(results: dict[str, dict], trained_length: int, title: str | None = None):
    """Return one panel per setting of passkey accuracy: input length on x, key depth on y.

    ``results`` maps a setting name to the output of ``minitx.tasks.evaluate_passkey``. Cells
    hold the accuracy in percent; a dashed line marks the training length.
    """
    names = list(results)
    with projector_style():
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
    with projector_style():
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
    values = np.array(sweep["values"], dtype=float)  # (G, W)
    shown = 100 * values if percent else values
    with projector_style():
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


def plot_answer_attention(panels: dict[str, np.ndarray], sentence: str, answer: str, heads, layer: int = 0,
                          title: str | None = None):
    """Return a grid of attention from the answer predictions onto the key sentence.

    ``panels`` maps a setting name to the weights of ``minitx.long_context.answer_attention``
    for one prompt, shape (n_layer, NH, 6, len(sentence)). Columns of the grid are settings,
    rows the chosen ``heads`` of ``layer``. In each panel row r is the position that predicts
    answer token r and the x axis spells out the key sentence, so a copying head shows a
    diagonal over the key's digits.
    """
    if not isinstance(panels, dict) or not panels:
        raise ValueError("panels must be a non-empty dict of setting name -> answer_attention weights.")
    names = list(panels)
    heads = list(heads)
    for name, weights in panels.items():
        shape = np.shape(weights)
        if len(shape) != 4 or shape[2:] != (len(answer), len(sentence)):
            raise ValueError(
                f"panels[{name!r}] must have shape (n_layer, NH, {len(answer)}, {len(sentence)}) for this "
                f"answer and sentence, got {shape}. Pass the weights and sentence that answer_attention returned."
            )
        if not 0 <= layer < shape[0] or not heads or not all(0 <= head < shape[1] for head in heads):
            raise ValueError(
                f"layer must lie in 0 .. {shape[0] - 1} and heads in 0 .. {shape[1] - 1} (at least one), "
                f"got layer={layer}, heads={heads}."
            )
    targets = [repr(ch) if ch == " " else ch for ch in answer]
    with projector_style():
        fig = Figure(figsize=(6.5 * len(names) + 1.5, 2.6 * len(heads) + 1.6), layout="constrained")
        axes = fig.subplots(len(heads), len(names), squeeze=False)
        for column, name in enumerate(names):
            for row, head in enumerate(heads):
                ax = axes[row, column]
                weights = panels[name][layer, head]  # (6, len(sentence))
                image = ax.imshow(weights, cmap="magma", vmin=0, vmax=1, aspect="auto", interpolation="nearest")
                ax.set_xticks(range(len(sentence)), list(sentence), fontsize=8, fontfamily="monospace")
                ax.set_yticks(range(len(targets)), [f"→ {t}" for t in targets], fontsize=10)
                ax.grid(False)
                ax.set_title(f"{name}\nlayer {layer}, head {head}" if row == 0 else f"layer {layer}, head {head}",
                             fontsize=13)
        fig.colorbar(image, ax=axes, shrink=0.8, label="attention probability")
        if title:
            fig.suptitle(title)
    return fig
