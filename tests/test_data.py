"""Corpora and tokenizers."""

import numpy as np
import pytest

from minitx.data import ByteTokenizer, CharTokenizer, get_batch, load_default_corpus, load_text, split_train_val


def test_default_corpus_is_real_english_text():
    text = load_default_corpus()
    assert len(text) > 300_000
    assert "The for statement" in text or "for" in text
    assert text == load_default_corpus(), "the corpus must be the same text every time"


def test_char_tokenizer_round_trip():
    text = "Self-Extend keeps RoPE's neighbours exact."
    tokenizer = CharTokenizer.from_text(text)
    ids = tokenizer.encode(text)
    assert ids.dtype == np.int64
    assert tokenizer.decode(ids) == text
    assert tokenizer.vocab_size == len(set(text))


def test_char_tokenizer_rejects_unknown_characters():
    tokenizer = CharTokenizer.from_text("abc")
    with pytest.raises(ValueError, match=r"not in the tokenizer's vocabulary: 'xz'.*--tokenizer byte"):
        tokenizer.encode("abxz")


def test_byte_tokenizer_round_trip_with_non_ascii():
    text = "Grüße, 位置 😀"
    tokenizer = ByteTokenizer()
    ids = tokenizer.encode(text)
    assert ids.max() < 256
    assert len(ids) == len(text.encode("utf-8"))
    assert tokenizer.decode(ids) == text


def test_split_is_a_fixed_cut():
    tokens = np.arange(100)
    train, val = split_train_val(tokens)
    assert np.array_equal(train, np.arange(90))
    assert np.array_equal(val, np.arange(90, 100))


def test_get_batch_targets_are_inputs_shifted_by_one():
    tokens = np.arange(50)
    x, y = get_batch(tokens, 3, 7, np.random.default_rng(0))
    assert x.shape == (3, 7)
    assert np.array_equal(y, x + 1)


def test_get_batch_rejects_text_shorter_than_context():
    with pytest.raises(ValueError, match="fewer than context_length"):
        get_batch(np.arange(5), 2, 8, np.random.default_rng(0))


def test_load_text_reads_utf8(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("héllo", encoding="utf-8")
    assert load_text(path) == "héllo"


def test_load_text_rejects_missing_empty_and_non_utf8(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_text(tmp_path / "missing.txt")
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="is empty"):
        load_text(empty)
    latin = tmp_path / "latin.txt"
    latin.write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(ValueError, match=r"not valid UTF-8 \(byte 3"):
        load_text(latin)
