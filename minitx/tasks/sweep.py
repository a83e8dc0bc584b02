"""The group size G x window W study of Self-Extend (Jin et al. 2024, arXiv 2401.01325,
section 4.4, the study of G and W), in miniature.

One RoPE-trained model is switched to ``SelfExtend(head_dim, G, W)`` for every pair, with no
training, and a metric (passkey accuracy or perplexity at one input length) is measured for
each. Pairs whose ``max_length`` falls short of the input length still run: their grouped
relative positions reach L or beyond, and the table shows what that costs.
"""

from __future__ import annotations

from tqdm.auto import tqdm

from .._checks import check_int
from ..positions import SelfExtend


def sweep_self_extend(model, group_sizes, windows, metric, progress: bool = False) -> dict:
    """Return ``metric(model with SelfExtend(G, W))`` for every G in ``group_sizes`` and W in ``windows``.

    The result holds ``group_sizes``, ``windows``, ``values`` (a list per G, one value per W)
    and ``max_length`` (the same layout: the longest input each pair keeps below L).
    """
    if model.position.kind != "rotary":
        raise ValueError(
            f"Self-Extend remaps RoPE rotations, but this model was trained with "
            f"position={model.config.position!r}. Sweep a model trained with position='rope'."
        )
    group_sizes = [check_int("group_size", G, minimum=1) for G in group_sizes]
    windows = [check_int("window", W, minimum=1) for W in windows]
    L = model.config.context_length
    c = model.config
    values, max_lengths = [], []
    cells = tqdm(total=len(group_sizes) * len(windows), desc="G x W", disable=not progress, unit="pair")
    for G in group_sizes:
        row, limits = [], []
        for W in windows:
            position = SelfExtend(c.head_dim, G, W, base=c.base, pairing=c.pairing)
            row.append(float(metric(model.with_position(position))))
            limits.append(position.max_length(L))
            cells.update()
        values.append(row)
        max_lengths.append(limits)
    cells.close()
    return {"group_sizes": group_sizes, "windows": windows, "values": values, "max_length": max_lengths}
