"""Passkey task: the prompt format, determinism, and the evaluator on models right and wrong by construction."""

import re

import numpy as np
import pytest

from minitx import ModelConfig, TransformerLM
from minitx.data import CharTokenizer, load_default_corpus
from minitx.tasks.passkey import (FILLER, KEY_SENTENCE, MIN_LENGTH, QUESTION, evaluate_passkey, generate_answers,
                                  make_prompt, sample_prompts, score_prompts)

KEY_PATTERN = re.compile(r"The pass key is (\d{5})\. Remember it\. \1 is the pass key\. ")


@pytest.fixture(scope="module")
def tokenizer():
    return CharTokenizer.from_text(load_default_corpus())


class RuleModel:
    """A causal stand-in for a language model that finds the key by reading the text.

    At each position it predicts the next character of the answer once the question has been
    read: a space, then the digits of the key it finds (``transform`` can spoil the key). Every
    other position predicts token 0. ``forward`` mirrors ``TransformerLM.forward``.
    """

    def __init__(self, tokenizer, transform=lambda key: key):
        self.tokenizer = tokenizer
        self.transform = transform
        self.calls = []

    def forward(self, tokens, targets=None, extrapolate=False):
        B, T = tokens.shape
        self.calls.append((B, T, extrapolate))
        logits = np.zeros((B, T, self.tokenizer.vocab_size), dtype=np.float32)
        for b in range(B):
            text = self.tokenizer.decode(tokens[b])
            found = KEY_PATTERN.search(text)
            answer = " " + self.transform(found.group(1)) if found else ""
            question = text.find(QUESTION)
            for t in range(T):
                read = t + 1 - (question + len(QUESTION))  # answer characters already read at position t
                if question >= 0 and 0 <= read < len(answer):
                    logits[b, t, self.tokenizer.ids[answer[read]]] = 1.0
        return logits, None


def test_prompt_has_exact_length_and_format():
    for length in (MIN_LENGTH, MIN_LENGTH + 1, 250, 257, 1018):
        for depth in (0.0, 0.3, 0.5, 1.0):
            prompt = make_prompt(length, depth, "40172")
            assert len(prompt.text) == length
            assert prompt.text.endswith(QUESTION)
            assert prompt.text.count("40172") == 2
            assert len(KEY_PATTERN.findall(prompt.text)) == 1
            assert prompt.answer == " 40172"


def test_prompt_filler_is_repeated_sentences():
    prompt = make_prompt(700, 0.4, "12345")
    key_sentence = KEY_SENTENCE.format(key="12345")
    filler = prompt.text.replace(key_sentence, "")[: -len(QUESTION)]
    assert filler.endswith(FILLER)
    assert filler in FILLER * 10
    assert prompt.text[prompt.key_start:].startswith(key_sentence)


def test_prompt_key_follows_depth():
    starts = [make_prompt(1000, depth, "12345").key_start for depth in np.linspace(0, 1, 11)]
    assert starts == sorted(starts)
    assert starts[0] < len(FILLER) // 2
    last = make_prompt(1000, 1.0, "12345")
    assert last.text.endswith(KEY_SENTENCE.format(key="12345") + QUESTION)
    middle = make_prompt(1000, 0.5, "12345")
    filler_length = 1000 - len(KEY_SENTENCE.format(key="12345")) - len(QUESTION)
    assert abs(middle.key_start - filler_length / 2) <= len("There and back again. ")


def test_prompt_key_starts_a_sentence():
    for depth in np.linspace(0, 1, 9):
        prompt = make_prompt(600, depth, "12345")
        before = prompt.text[:prompt.key_start]
        assert before == "" or before.endswith(". ") or len(before) < len(FILLER), before[-30:]


def test_sample_prompts_is_deterministic():
    first = sample_prompts(300, 0.5, 6, seed=3)
    again = sample_prompts(300, 0.5, 6, seed=3)
    other = sample_prompts(300, 0.5, 6, seed=4)
    assert [p.text for p in first] == [p.text for p in again]
    assert [p.key for p in first] != [p.key for p in other]
    assert all(len(p.key) == 5 and p.key[0] != "0" for p in first)


def test_sample_prompts_same_keys_in_every_cell():
    short = sample_prompts(200, 0.0, 5, seed=1)
    long = sample_prompts(900, 1.0, 5, seed=1)
    assert [p.key for p in short] == [p.key for p in long]


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"length": MIN_LENGTH - 1, "depth": 0.5, "key": "12345"}, ValueError, f"at least {MIN_LENGTH}"),
        ({"length": 300, "depth": 1.5, "key": "12345"}, ValueError, "between 0"),
        ({"length": 300, "depth": "deep", "key": "12345"}, TypeError, "depth must be a number"),
        ({"length": 300, "depth": 0.5, "key": "1234"}, ValueError, "5 digits"),
        ({"length": 300, "depth": 0.5, "key": 12345}, ValueError, "5 digits"),
        ({"length": 300.0, "depth": 0.5, "key": "12345"}, TypeError, "length must be an integer"),
    ],
)
def test_prompt_rejects_bad_input(kwargs, error, message):
    with pytest.raises(error, match=message):
        make_prompt(**kwargs)


def test_evaluator_right_model_scores_one(tokenizer):
    model = RuleModel(tokenizer)
    result = evaluate_passkey(model, tokenizer, [200, 512], depths=(0.0, 0.5, 1.0), n_keys=5, batch_size=3)
    assert result["accuracy"] == [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]
    assert result["lengths"] == [200, 512]
    assert result["depths"] == [0.0, 0.5, 1.0]
    expected, predicted = result["answers"]["512/0.5"][0]
    assert predicted == expected
    assert len(expected) == 5


def test_evaluator_reads_whole_length(tokenizer):
    model = RuleModel(tokenizer)
    evaluate_passkey(model, tokenizer, [300], depths=(0.5,), n_keys=4, batch_size=4)
    assert model.calls == [(4, 299, True)]  # the prompt and the answer but its last token


def test_evaluator_wrong_model_scores_zero(tokenizer):
    model = RuleModel(tokenizer, transform=lambda key: key[::-1] if key != key[::-1] else "00000")
    result = evaluate_passkey(model, tokenizer, [200, 400], depths=(0.0, 1.0), n_keys=6)
    assert result["accuracy"] == [[0.0, 0.0], [0.0, 0.0]]


def test_evaluator_one_wrong_digit_is_a_miss(tokenizer):
    model = RuleModel(tokenizer, transform=lambda key: key[:4] + str((int(key[4]) + 1) % 10))
    result = evaluate_passkey(model, tokenizer, [300], depths=(0.5,), n_keys=4)
    assert result["accuracy"] == [[0.0]]


def test_evaluator_partly_right_model(tokenizer):
    keys = [p.key for p in sample_prompts(200, 0.0, 10, seed=0)]
    right = set(keys[::2])
    model = RuleModel(tokenizer, transform=lambda key: key if key in right else "00000")
    result = evaluate_passkey(model, tokenizer, [200], depths=(0.0,), n_keys=10, seed=0)
    assert result["accuracy"] == [[len(right) / 10]]


def test_evaluator_rejects_bad_arguments(tokenizer):
    model = RuleModel(tokenizer)
    with pytest.raises(ValueError, match="method must be one of"):
        evaluate_passkey(model, tokenizer, [200], method="beam")
    with pytest.raises(ValueError, match="length must be >="):
        evaluate_passkey(model, tokenizer, [50])
    with pytest.raises(ValueError, match="between 0"):
        evaluate_passkey(model, tokenizer, [200], depths=(0.5, 2.0))


def test_score_matches_greedy_generation(tokenizer):
    config = ModelConfig(tokenizer.vocab_size, 128, n_layer=1, n_head=2, n_embd=16)
    model = TransformerLM(config, seed=5)
    prompts = sample_prompts(150, 0.5, 3, seed=2)
    scored = score_prompts(model, tokenizer, prompts, batch_size=3)
    generated = generate_answers(model, tokenizer, prompts, batch_size=2)
    # Greedy decoding and the teacher-forced argmax agree up to and including the first miss.
    for prompt, a, b in zip(prompts, scored, generated):
        assert (a == prompt.answer) == (b == prompt.answer)
        assert a[0] == b[0]


def test_score_rejects_mixed_lengths(tokenizer):
    prompts = sample_prompts(150, 0.5, 1, seed=2) + sample_prompts(160, 0.5, 1, seed=2)
    with pytest.raises(ValueError, match="share a length"):
        score_prompts(RuleModel(tokenizer), tokenizer, prompts, batch_size=2)


def test_answer_token_accuracy_locates_the_wrong_digit(tokenizer):
    from minitx.long_context import answer_token_accuracy

    prompts = sample_prompts(220, 0.25, 6, seed=2)
    right = answer_token_accuracy(RuleModel(tokenizer), tokenizer, prompts)
    spoiled = RuleModel(tokenizer, transform=lambda key: key[:3] + str((int(key[3]) + 1) % 10) + key[4])
    wrong_fourth = answer_token_accuracy(spoiled, tokenizer, prompts)
    np.testing.assert_array_equal(right, np.ones(6))
    np.testing.assert_array_equal(wrong_fourth, [1, 1, 1, 1, 0, 1])  # space, digits 1-3 right, digit 4 wrong
