"""Recipes and shipped checkpoints: loading by name, the passkey training mix, reproducing the loss curve."""

import numpy as np
import pytest

import minitx
from minitx.checkpoint import load_checkpoint
from minitx.recipes import RECIPES, PasskeyMixture, corpus_and_tokenizer, get_recipe, pretrained_path, run_recipe
from minitx.tasks.passkey import QUESTION


@pytest.fixture(scope="module")
def corpus():
    return corpus_and_tokenizer()


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_shipped_checkpoint_loads_by_name(name, corpus):
    tokenizer, _, _ = corpus
    model, loaded_tokenizer = minitx.load_pretrained(name)
    recipe = get_recipe(name)
    assert model.config.position == recipe.position
    assert model.config.context_length == recipe.context_length
    assert (model.config.n_layer, model.config.n_head, model.config.n_embd) == (recipe.n_layer, recipe.n_head, recipe.n_embd)
    assert loaded_tokenizer.chars == tokenizer.chars

    _, _, optimizer_state, meta = load_checkpoint(pretrained_path(name))
    assert optimizer_state == {}, "shipped files carry no optimiser state"
    assert meta["recipe"]["name"] == name
    assert len(meta["history"]["train_loss"]) == recipe.steps


def test_shipped_checkpoints_are_small():
    sizes = {name: pretrained_path(name).stat().st_size for name in RECIPES}
    assert sum(sizes.values()) < 8_000_000, sizes


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe_reproduces_shipped_loss_start(name):
    _, _, _, meta = load_checkpoint(pretrained_path(name))
    _, _, history = run_recipe(name, steps=3, progress=False)
    shipped = meta["history"]["train_loss"][:3]
    np.testing.assert_allclose(history["train_loss"], shipped, rtol=1e-4, err_msg=f"recipe {name}")


def test_load_pretrained_rejects_unknown_name():
    with pytest.raises(ValueError, match="neither a shipped model"):
        minitx.load_pretrained("passkey-alibi")


def test_load_pretrained_accepts_a_path(tmp_path):
    model, _ = minitx.load_pretrained(pretrained_path("char-rope"))
    assert model.config.position == "rope"


def test_get_recipe_lists_names():
    with pytest.raises(ValueError, match="passkey-rope"):
        get_recipe("nope")


def test_mixture_rows_hold_question_and_answer(corpus):
    tokenizer, train_ids, _ = corpus
    mixture = PasskeyMixture(tokenizer, train_ids, fraction=0.5)
    T = 256
    x, y = mixture(6, T, np.random.default_rng(0))
    assert x.shape == y.shape == (6, T)
    np.testing.assert_array_equal(x[:, 1:], y[:, :-1])
    for row in range(6):
        text = tokenizer.decode(np.concatenate([x[row], y[row, -1:]]))
        has_passkey = QUESTION in text
        assert has_passkey == (row < 3), text
        if has_passkey:
            key = text.split("The pass key is ")[1][:5]
            assert text.split(QUESTION)[1].startswith(" " + key)


def test_mixture_is_seeded(corpus):
    tokenizer, train_ids, _ = corpus
    mixture = PasskeyMixture(tokenizer, train_ids, fraction=0.75)
    first = mixture(4, 200, np.random.default_rng([0, 5]))
    again = mixture(4, 200, np.random.default_rng([0, 5]))
    np.testing.assert_array_equal(first[0], again[0])


def test_mixture_rejects_short_context(corpus):
    tokenizer, train_ids, _ = corpus
    with pytest.raises(ValueError, match="context_length >="):
        PasskeyMixture(tokenizer, train_ids, fraction=1.0)(2, 64, np.random.default_rng(0))
    with pytest.raises(ValueError, match="fraction must be between"):
        PasskeyMixture(tokenizer, train_ids, fraction=1.5)


def test_attention_to_key_finds_retrieval_head():
    from minitx.long_context import attention_to_key
    from minitx.tasks import sample_prompts

    model, tokenizer = minitx.load_pretrained("passkey-rope")
    prompt = sample_prompts(250, 0.5, 1, seed=0)[0]
    weights = attention_to_key(model, tokenizer, prompt)
    assert weights.shape == (model.config.n_layer, model.config.n_head)
    assert np.all((weights >= 0) & (weights <= 1 + 1e-6))
    assert weights.max() > 0.3, "plain RoPE retrieves at this length, so some head looks at the key"


def test_answer_attention_copy_diagonal():
    from minitx.long_context import answer_attention
    from minitx.tasks import sample_prompts

    model, tokenizer = minitx.load_pretrained("passkey-rope")
    prompt = sample_prompts(250, 0.5, 1, seed=0)[0]
    weights, sentence = answer_attention(model, tokenizer, prompt)
    assert sentence == f"The pass key is {prompt.key}. Remember it. {prompt.key} is the pass key."
    assert weights.shape == (model.config.n_layer, model.config.n_head, 6, len(sentence))
    assert np.all(weights >= 0)
    assert np.all(weights.sum(axis=-1) <= 1 + 1e-6)
    # Rows 2 to 5 predict key digits 2 to 5; some first-layer head looks at exactly those.
    first_digit = sentence.index(prompt.key)
    targets = first_digit + np.arange(1, 5)
    looked_at = weights[0, :, 2:, :].argmax(axis=-1)  # (NH, 4)
    assert any(np.array_equal(row, targets) for row in looked_at), looked_at
