"""Figures: every plotting function in both themes, atomic and repeatable files, the
per-layer attention hook, and ``minitx figures`` against the committed figures/ folder."""

from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure

from minitx import ModelConfig, SelfExtend, TransformerLM, figures, plotting
from minitx.cli import main
from minitx.figures import LONG_CONTEXT_FILES
from minitx.inspection import attention_maps

FIGURES_DIR = Path(__file__).resolve().parents[1] / "figures"


def _probs(n_layer=2, NH=3, T=7, seed=0):
    scores = np.random.default_rng(seed).standard_normal((n_layer, NH, T, T))
    scores = np.where(np.tril(np.ones((T, T), dtype=bool)), scores, -np.inf)
    e = np.exp(scores - scores.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


FIGURE_CALLS = {
    "rope_rotations": lambda theme: plotting.plot_rope_rotations(head_dim=8, positions=range(5), pairs=(0, 2), theme=theme),
    "rope_score": lambda theme: plotting.plot_rope_score_by_distance(head_dim=16, max_distance=40, theme=theme),
    "sinusoidal": lambda theme: plotting.plot_sinusoidal_table(T=20, dim=10, theme=theme),
    "attention": lambda theme: plotting.plot_attention_maps(_probs(), theme=theme),
    "self_extend": lambda theme: plotting.plot_self_extend_positions(T=9, group_size=2, window=3, trained_length=5,
                                                                     theme=theme),
    "perplexity": lambda theme: plotting.plot_perplexity_by_length({"rope": {16: 3.0, 32: 9.0}}, 16, theme=theme),
    "passkey": lambda theme: plotting.plot_passkey_heatmap({128: {0.0: 1.0, 0.5: 0.5}, 256: {0.0: 0.0}},
                                                           trained_length=128, theme=theme),
    "benchmark": lambda theme: plotting.plot_benchmark({"numpy": {64: 0.001, 128: 0.004}}, theme=theme),
}


@pytest.mark.parametrize("theme", ["light", "dark"])
@pytest.mark.parametrize("name", sorted(FIGURE_CALLS))
def test_figure_builds_in_theme(name, theme):
    fig = FIGURE_CALLS[name](theme)
    assert isinstance(fig, Figure)
    expected_background = {"light": (1.0, 1.0, 1.0, 1.0), "dark": (17 / 255, 17 / 255, 17 / 255, 1.0)}[theme]
    assert fig.get_facecolor() == pytest.approx(expected_background)
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert any(ax.get_xlabel() for ax in panels), f"{name}: no x axis is labelled"
    assert any(ax.get_ylabel() for ax in panels), f"{name}: no y axis is labelled"


def test_answer_attention_grid_spells_the_key_sentence():
    sentence = "The pass key is 40172. Remember it. 40172 is the pass key."
    weights = np.random.default_rng(3).dirichlet(np.ones(len(sentence)), size=(2, 3, 6))  # (n_layer, NH, 6, S)
    fig = plotting.plot_answer_attention({"rope": weights, "self-extend": weights[::-1]}, sentence, " 40172",
                                         heads=[0, 2], layer=1)
    images = [ax for ax in fig.axes if ax.get_images()]
    assert len(images) == 4  # 2 heads x 2 settings
    assert "".join(label.get_text() for label in images[0].get_xticklabels()) == sentence
    assert [label.get_text() for label in images[0].get_yticklabels()][1] == "→ 4"  # row 1 predicts digit 1
    np.testing.assert_array_equal(images[2].get_images()[0].get_array(), weights[1, 2])  # row-major: head 2, "rope"


def test_attention_axes_put_query_on_rows():
    fig = plotting.plot_attention_maps(_probs(n_layer=1, NH=1))
    ax = fig.axes[0]
    assert ax.get_ylabel() == "query position i"
    assert ax.get_xlabel() == "key position j"


def test_unknown_theme_is_rejected():
    with pytest.raises(ValueError, match="theme must be one of"):
        plotting.plot_sinusoidal_table(theme="blue")


def test_attention_maps_rejects_bad_shape():
    with pytest.raises(ValueError, match=r"\(n_layer, NH, T, T\)"):
        plotting.plot_attention_maps(np.zeros((2, 3, 4)).reshape(2, 3, 4, 1))


def test_perplexity_ticks_are_plain_numbers():
    fig = plotting.plot_perplexity_by_length({"rope": {128: 3.0, 256: 4.0, 512: 9.0}}, 128)
    fig.canvas.draw()
    labels = [label.get_text() for label in fig.axes[0].get_xticklabels()]
    assert labels == ["128", "256", "512"]


def test_passkey_grid_accepts_three_forms():
    nested = {256: {0.0: 1.0, 0.5: 0.0}, 128: {0.0: 1.0, 0.5: 1.0}}
    flat = {(128, 0.0): 1.0, (128, 0.5): 1.0, (256, 0.0): 1.0, (256, 0.5): 0.0}
    array = np.array([[1.0, 1.0], [1.0, 0.0]])  # (depths, lengths)
    expected = (array, [128, 256], [0.0, 0.5])
    for accuracy, kwargs in ((nested, {}), (flat, {}), (array, {"lengths": [128, 256], "depths": [0.0, 0.5]})):
        grid, lengths, depths = plotting.passkey_grid(accuracy, **kwargs)
        assert np.array_equal(grid, expected[0])
        assert lengths == expected[1]
        assert depths == expected[2]


def test_passkey_grid_rejects_array_without_axes():
    with pytest.raises(ValueError, match="lengths and depths"):
        plotting.passkey_grid(np.zeros((2, 3)), lengths=[1, 2])


@pytest.mark.parametrize("suffix", [".png", ".svg"])
def test_saved_figure_is_repeatable(tmp_path, suffix):
    first = plotting.save_figure(plotting.plot_self_extend_positions(T=8, group_size=2, window=2), tmp_path / f"a{suffix}")
    second = plotting.save_figure(plotting.plot_self_extend_positions(T=8, group_size=2, window=2), tmp_path / f"b{suffix}")
    assert first.read_bytes() == second.read_bytes()
    assert b"Date" not in first.read_bytes()[:2000]
    assert not list(tmp_path.glob(".*")), "temporary files were left behind"


def test_animation_writes_gif(tmp_path):
    path = plotting.save_rope_animation(tmp_path / "pair.gif", n_positions=3, pairs=(0,))
    assert path.read_bytes()[:6] in (b"GIF87a", b"GIF89a")
    assert not list(tmp_path.glob(".*"))


# ----------------------------------------------------------------------------- attention hook


@pytest.mark.parametrize("position", ["rope", "sinusoidal", "self-extend"])
def test_attention_maps_shape_and_rows(position):
    config = ModelConfig(23, 16, n_layer=2, n_head=3, n_embd=24, position=position, group_size=2, window=3,
                         dtype="float64")
    model = TransformerLM(config, seed=1)
    tokens = np.random.default_rng(0).integers(0, 23, size=(2, 9))  # (B, T)
    maps = attention_maps(model, tokens)
    assert maps.shape == (2, 2, 3, 9, 9)  # (n_layer, B, NH, T, T)
    assert np.allclose(maps.sum(-1), 1.0)
    assert np.all(maps[..., np.triu(np.ones((9, 9), dtype=bool), k=1)] == 0)


@pytest.mark.parametrize("position", [None, "self-extend"])
def test_attention_maps_reproduce_block_output(position):
    config = ModelConfig(23, 16, n_layer=1, n_head=3, n_embd=24, position="rope", dtype="float64")
    model = TransformerLM(config, seed=2)
    if position == "self-extend":
        model = model.with_position(SelfExtend(config.head_dim, group_size=2, window=3))
    tokens = np.random.default_rng(3).integers(0, 23, size=(2, 10))
    probs = attention_maps(model, tokens)[0]  # (B, NH, T, T)

    block = model.blocks[0]
    x = model._embed(tokens, np.arange(10))
    h = block.ln_1.forward(x)
    _, _, v = block.attn.project_qkv(h)  # (B, NH, T, hs)
    y = (probs @ v).transpose(0, 2, 1, 3).reshape(2, 10, 24)  # (B, NH, T, hs) -> (B, T, C)
    expected = block.attn.forward(h, np.arange(10))
    assert np.allclose(block.attn.c_proj.forward(y), expected, atol=1e-12)


def test_attention_maps_checks_length():
    model = TransformerLM(ModelConfig(23, 8, n_layer=1, n_head=2, n_embd=8), seed=0)
    with pytest.raises(ValueError, match="exceeds 8"):
        attention_maps(model, np.zeros(12, dtype=np.int64))
    assert attention_maps(model, np.zeros(12, dtype=np.int64), extrapolate=True).shape == (1, 1, 2, 12, 12)


# ----------------------------------------------------------------------------- minitx figures


def test_figures_command_matches_committed_files(tmp_path, capsys):
    assert main(["figures", "--out", str(tmp_path), "--no-long-context"]) == 0
    printed = capsys.readouterr().out
    generated = sorted(path.name for path in tmp_path.iterdir())
    committed = sorted(path.name for path in FIGURES_DIR.iterdir()
                       if not path.name.startswith(".") and path.name not in LONG_CONTEXT_FILES)
    assert generated == committed, "run `minitx figures` and commit figures/"
    assert {".png", ".svg", ".gif"} <= {Path(name).suffix for name in generated}
    assert {"char_rope_attention.png", "char_rope_attention.svg", "char_rope_attention-dark.png"} <= set(generated)
    assert "Skipped char_rope_attention" not in printed


def test_figures_skip_attention_without_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setattr(figures, "load_shipped_model", lambda name: None)
    monkeypatch.setattr(figures, "FIGURES", {})
    monkeypatch.setattr(figures, "ANIMATIONS", {})
    result = figures.build_figures(tmp_path, long_context=False)
    assert result["written"] == []
    assert [name for name, _ in result["skipped"]] == ["the long-context study", "char_rope_attention"]
    assert "char-rope" in result["skipped"][1][1]


def test_shipped_attention_figure_is_deterministic(tmp_path):
    model, tokenizer = figures.load_shipped_model(figures.ATTENTION_MODEL)
    first = plotting.save_figure(figures.plot_shipped_attention_maps(model, tokenizer), tmp_path / "first.png")
    second = plotting.save_figure(figures.plot_shipped_attention_maps(model, tokenizer), tmp_path / "second.png")
    assert first.read_bytes() == second.read_bytes()
    assert len(figures.ATTENTION_PASSAGE) == model.config.context_length
