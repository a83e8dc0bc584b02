"""Training: AdamW, the schedule, clipping, reproducibility, resume and checkpoints."""

import numpy as np
import pytest

from minitx import ModelConfig, TransformerLM
from minitx.checkpoint import CheckpointError, load_checkpoint, read_checkpoint, save_checkpoint
from minitx.data import CharTokenizer, load_default_corpus, split_train_val
from minitx.optim import AdamW, clip_grad_norm, learning_rate
from minitx.train import TrainConfig, estimate_loss, train


@pytest.fixture(scope="module")
def corpus():
    text = load_default_corpus()
    tokenizer = CharTokenizer.from_text(text)
    train_ids, val_ids = split_train_val(tokenizer.encode(text))
    return tokenizer, train_ids, val_ids


def small_model(tokenizer, position="rope", seed=0):
    config = ModelConfig(tokenizer.vocab_size, 32, n_layer=2, n_head=2, n_embd=32, position=position)
    return TransformerLM(config, seed=seed)


def test_adamw_matches_formula(rng):
    p = rng.standard_normal((3, 4))
    bias = rng.standard_normal(4)
    start_p, start_bias = p.copy(), bias.copy()
    opt = AdamW({"w": p, "b": bias}, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.1)
    g1, g2 = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    opt.step({"w": g1, "b": np.ones(4)}, lr=0.01)
    opt.step({"w": g2, "b": np.ones(4)}, lr=0.02)

    expected = start_p.copy()
    m = np.zeros_like(expected)
    v = np.zeros_like(expected)
    for t, (g, lr) in enumerate([(g1, 0.01), (g2, 0.02)], start=1):
        m = 0.9 * m + 0.1 * g
        v = 0.99 * v + 0.01 * g * g
        expected = expected * (1 - lr * 0.1)  # decoupled decay on matrices
        expected = expected - lr * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.99**t)) + 1e-8)
    np.testing.assert_allclose(p, expected, rtol=1e-12)
    # Biases are not decayed: with a constant gradient each step moves them by lr.
    np.testing.assert_allclose(bias, start_bias - 0.01 - 0.02, rtol=1e-6)


def test_learning_rate_warmup_then_cosine():
    lrs = [learning_rate(s, 1.0, 10, 110, 0.1) for s in range(120)]
    assert lrs[0] == pytest.approx(0.1)
    assert lrs[9] == pytest.approx(1.0)
    assert lrs[60] == pytest.approx(0.1 + 0.45 * (1 + np.cos(np.pi * 0.5)))
    assert lrs[110] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(lrs[9:110], lrs[10:110]))


def test_clip_grad_norm_scales_to_max():
    grads = {"a": np.array([3.0, 0.0]), "b": np.array([[4.0]])}
    before = clip_grad_norm(grads, 1.0)
    assert before == pytest.approx(5.0)
    assert np.sqrt(sum((g**2).sum() for g in grads.values())) == pytest.approx(1.0, rel=1e-5)
    small = {"a": np.array([0.3])}
    clip_grad_norm(small, 1.0)
    assert small["a"][0] == 0.3


def test_clip_grad_norm_rejects_non_finite():
    with pytest.raises(FloatingPointError, match="diverged"):
        clip_grad_norm({"a": np.array([np.nan])}, 1.0)


QUICK = TrainConfig(steps=150, batch_size=16, learning_rate=3e-3, warmup_steps=20, eval_interval=75, eval_batches=4)
# A model that predicts characters by unigram frequency alone reaches about 3.3 nats on this
# corpus, and the uniform guess is ln(103) = 4.63. Staying above 2.9 means nothing was learned
# beyond the unigram statistics.
QUICK_LOSS_BOUND = 2.9


@pytest.mark.parametrize("position", ["rope", "sinusoidal"])
def test_quick_training_lowers_validation_loss(corpus, position):
    tokenizer, train_ids, val_ids = corpus
    model = small_model(tokenizer, position)
    initial = estimate_loss(model, val_ids, 16, 4)
    history = train(model, train_ids, val_ids, QUICK, progress=False)
    assert initial > 4.4, f"untrained loss {initial} should be near ln(103) = 4.63"
    assert history["val_loss"][-1] < QUICK_LOSS_BOUND
    assert history["val_step"] == [75, 150]


def test_unigram_baseline_is_above_bound(corpus):
    _, train_ids, val_ids = corpus
    counts = np.bincount(train_ids, minlength=103) + 1
    probs = counts / counts.sum()
    assert -np.log(probs[val_ids]).mean() > QUICK_LOSS_BOUND + 0.3


def test_same_seed_gives_identical_loss_curve(corpus):
    tokenizer, train_ids, val_ids = corpus
    config = TrainConfig(steps=12, batch_size=4, eval_interval=6, eval_batches=2, seed=3)
    first = train(small_model(tokenizer, seed=3), train_ids, val_ids, config, progress=False)
    second = train(small_model(tokenizer, seed=3), train_ids, val_ids, config, progress=False)
    assert first["train_loss"] == second["train_loss"]
    assert first["val_loss"] == second["val_loss"]
    other = train(small_model(tokenizer, seed=4), train_ids, val_ids, TrainConfig(steps=12, batch_size=4, eval_interval=6, eval_batches=2, seed=4), progress=False)
    assert other["train_loss"] != first["train_loss"]


def test_resume_continues_the_same_curve(corpus, tmp_path, monkeypatch):
    tokenizer, train_ids, val_ids = corpus
    config = TrainConfig(steps=16, batch_size=4, eval_interval=8, eval_batches=2, checkpoint_interval=8)
    straight = small_model(tokenizer)
    full = train(straight, train_ids, val_ids, config, progress=False)

    # Interrupt a second run right after its step-8 checkpoint is written.
    import minitx.train as train_module

    path = tmp_path / "model.npz"
    original_save = train_module.save_checkpoint

    def save_then_interrupt(*args, **kwargs):
        original_save(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "save_checkpoint", save_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        train(small_model(tokenizer), train_ids, val_ids, config, tokenizer=tokenizer, checkpoint_path=path, progress=False)
    monkeypatch.undo()

    model, _, optimizer_state, meta = load_checkpoint(path)
    assert meta["step"] == 8
    resumed = train(model, train_ids, val_ids, config, tokenizer=tokenizer, checkpoint_path=path,
                    resume={"optimizer_state": optimizer_state, "meta": meta}, progress=False)
    assert resumed["train_loss"] == full["train_loss"]
    assert resumed["val_loss"] == full["val_loss"]
    for (name, a), (_, b) in zip(model.named_parameters(), straight.named_parameters()):
        assert np.array_equal(a, b), name


def test_checkpoint_round_trip_is_bit_identical(corpus, tmp_path):
    tokenizer, _, _ = corpus
    model = small_model(tokenizer, "sinusoidal", seed=5)
    path = save_checkpoint(tmp_path / "m.npz", model, tokenizer, meta={"note": "x"})
    loaded, loaded_tokenizer, optimizer_state, meta = load_checkpoint(path)
    assert loaded.config == model.config
    assert loaded_tokenizer.chars == tokenizer.chars
    assert optimizer_state == {}
    assert meta == {"note": "x"}
    for (name, a), (_, b) in zip(model.named_parameters(), loaded.named_parameters()):
        assert a.dtype == b.dtype, name
        assert a.tobytes() == b.tobytes(), name
    tokens = np.arange(20).reshape(2, 10) % tokenizer.vocab_size
    assert np.array_equal(model(tokens), loaded(tokens))


def test_checkpoint_save_leaves_no_temporary_files(corpus, tmp_path):
    tokenizer, _, _ = corpus
    save_checkpoint(tmp_path / "m.npz", small_model(tokenizer), tokenizer)
    save_checkpoint(tmp_path / "m.npz", small_model(tokenizer, seed=1), tokenizer)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npz"]


def test_missing_checkpoint_is_reported(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.npz")


def test_truncated_checkpoint_is_reported(corpus, tmp_path):
    tokenizer, _, _ = corpus
    path = save_checkpoint(tmp_path / "m.npz", small_model(tokenizer), tokenizer)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(path)


def test_tampered_checkpoint_is_reported(corpus, tmp_path):
    tokenizer, _, _ = corpus
    path = save_checkpoint(tmp_path / "m.npz", small_model(tokenizer), tokenizer)
    arrays = read_checkpoint(path)
    arrays["param.lm_head.weight"] = arrays["param.lm_head.weight"] + 1e-3
    arrays["digest"] = np.array("0" * 64)
    np.savez(path, **arrays)
    with pytest.raises(CheckpointError, match="SHA-256"):
        load_checkpoint(path)


def test_foreign_npz_is_reported(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, weights=np.zeros(3))
    with pytest.raises(CheckpointError, match="not a minitx"):
        load_checkpoint(path)


def test_checkpoint_with_pickled_object_is_rejected(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, format=np.array("minitx-checkpoint-1"), payload=np.array([{"a": 1}], dtype=object))
    with pytest.raises(CheckpointError, match="could not be read"):
        load_checkpoint(path)


def test_checkpoint_file_gets_default_permissions(corpus, tmp_path):
    import os

    tokenizer, _, _ = corpus
    umask = os.umask(0o022)
    try:
        path = save_checkpoint(tmp_path / "m.npz", small_model(tokenizer), tokenizer)
    finally:
        os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o644


def test_npy_file_or_directory_is_not_a_checkpoint(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros(3))
    with pytest.raises(CheckpointError, match="not an .npz archive"):
        load_checkpoint(tmp_path / "a.npy")
    with pytest.raises(CheckpointError, match="is a directory"):
        load_checkpoint(tmp_path)


def test_checkpoint_with_broken_tokenizer_entry_is_reported(corpus, tmp_path):
    from minitx.checkpoint import _digest

    tokenizer, _, _ = corpus
    path = save_checkpoint(tmp_path / "m.npz", small_model(tokenizer), tokenizer)
    arrays = read_checkpoint(path)
    arrays["tokenizer"] = np.array('{"kind": "char"}')
    arrays["digest"] = np.array(_digest(arrays))
    np.savez(path, **arrays)
    with pytest.raises(CheckpointError, match="invalid config, tokenizer or metadata"):
        load_checkpoint(path)
