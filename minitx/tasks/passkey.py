"""Passkey retrieval: hide a five-digit key in filler text and ask for it at the end.

The prompt format is the one used by the long-context literature that Self-Extend (Jin et al.
2024, "LLM Maybe LongLM", arXiv 2401.01325, section 4.2) evaluates on:

    <filler> The pass key is 12345. Remember it. 12345 is the pass key. <filler>
    What is the pass key? The pass key is

The filler is the five sentences of ``FILLER`` repeated, cut so that the whole prompt has
exactly ``length`` characters. With the character and byte tokenizers every character of the
prompt is one token, so ``length`` is also the prompt length in tokens. ``depth`` (0 to 1) sets
where the key sentence sits in the filler: 0 at the start, 1 right before the question. It is
rounded to the nearest sentence start, so the key never splits a filler sentence; the filler
itself may begin mid-sentence, so depth 0 can leave a fragment of up to one sentence before
the key.

The expected continuation is ``" " + key``. Exact match means all its tokens are right.

Not done here: multi-token (subword) tokenizers, for which ``length`` would need to be
measured after tokenisation.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .._checks import check_int

FILLER = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. "
KEY_SENTENCE = "The pass key is {key}. Remember it. {key} is the pass key. "
QUESTION = "What is the pass key? The pass key is"
KEY_DIGITS = 5
#: Shortest prompt: the key sentence and the question with no filler at all.
MIN_LENGTH = len(KEY_SENTENCE.format(key="0" * KEY_DIGITS)) + len(QUESTION)


@dataclasses.dataclass(frozen=True)
class PasskeyPrompt:
    """One passkey prompt: ``text`` of ``length`` characters and the ``answer`` that follows it."""

    text: str
    key: str
    depth: float
    key_start: int

    @property
    def answer(self) -> str:
        return " " + self.key

    @property
    def length(self) -> int:
        return len(self.text)


def check_depth(depth) -> float:
    """Return ``depth`` as a float in [0, 1], or raise naming the value and the rule."""
    if isinstance(depth, bool) or not isinstance(depth, (int, float, np.integer, np.floating)):
        raise TypeError(f"depth must be a number between 0 and 1, got {depth!r}.")
    depth = float(depth)
    if not 0.0 <= depth <= 1.0:
        raise ValueError(
            f"depth must be between 0 (key at the start) and 1 (key right before the question), got {depth}."
        )
    return depth


def make_prompt(length: int, depth: float, key: str) -> PasskeyPrompt:
    """Return the passkey prompt of exactly ``length`` characters with ``key`` at ``depth``."""
    length = check_int("length", length, minimum=1)
    depth = check_depth(depth)
    if not (isinstance(key, str) and len(key) == KEY_DIGITS and key.isdigit()):
        raise ValueError(f"key must be a string of {KEY_DIGITS} digits such as '40172', got {key!r}.")
    if length < MIN_LENGTH:
        raise ValueError(
            f"A passkey prompt needs at least {MIN_LENGTH} characters (the key sentence and the "
            f"question), got length={length}. Ask for a length >= {MIN_LENGTH}."
        )

    # The filler is the tail of enough repetitions of FILLER, so it ends with a whole sentence
    # right before the question; it may start mid-sentence.
    key_sentence = KEY_SENTENCE.format(key=key)
    filler_length = length - len(key_sentence) - len(QUESTION)
    repeats = filler_length // len(FILLER) + 2
    repeated = FILLER * repeats
    offset = len(repeated) - filler_length
    filler = repeated[offset:]

    # The key goes at the sentence start nearest to depth * filler_length. The end of the
    # filler counts as a sentence start, so depth 1 always puts the key before the question.
    starts = [p for p in range(filler_length + 1) if repeated[offset + p - 2:offset + p] == ". "]
    starts = np.array(sorted(set(starts + [filler_length])))
    cut = int(starts[np.argmin(np.abs(starts - depth * filler_length))])

    text = filler[:cut] + key_sentence + filler[cut:] + QUESTION
    return PasskeyPrompt(text=text, key=key, depth=depth, key_start=cut)


def random_key(rng: np.random.Generator) -> str:
    """Return a random five-digit key from 10000 to 99999."""
    return str(int(rng.integers(10 ** (KEY_DIGITS - 1), 10**KEY_DIGITS)))


def sample_prompts(length: int, depth: float, n_keys: int, seed: int = 0) -> list[PasskeyPrompt]:
    """Return ``n_keys`` prompts of one (length, depth) cell with random keys from ``seed``.

    The keys depend only on ``seed``, not on length or depth, so every cell of an evaluation
    grid uses the same keys.
    """
    n_keys = check_int("n_keys", n_keys, minimum=1)
    seed = check_int("seed", seed, minimum=0)
    rng = np.random.default_rng([seed, 7])
    return [make_prompt(length, depth, random_key(rng)) for _ in range(n_keys)]


def _batches_of_one_length(prompts: list[PasskeyPrompt], batch_size: int):
    """Yield (batch, N): consecutive groups of ``batch_size`` prompts that share the length N."""
    batch_size = check_int("batch_size", batch_size, minimum=1)
    for first in range(0, len(prompts), batch_size):
        batch = prompts[first:first + batch_size]
        lengths = {prompt.length for prompt in batch}
        if len(lengths) != 1:
            raise ValueError(f"Prompts of one batch must share a length, got lengths {sorted(lengths)}.")
        yield batch, lengths.pop()


def score_prompts(model, tokenizer, prompts: list[PasskeyPrompt], batch_size: int = 8) -> list[str]:
    """Return the greedy answer the model gives to each prompt, all in one forward per batch.

    Greedy decoding gets the whole answer right exactly when, fed the true answer (teacher
    forcing), the argmax at every answer position is the true token: up to the first wrong
    token both read the same input. So the answer returned here is the teacher-forced argmax,
    and ``predicted == prompt.answer`` is exactly the greedy exact match. Past the first wrong
    token the returned characters can differ from what free-running decoding would write.
    Prompts of one batch must share a length.
    """
    answers = []
    for batch, N in _batches_of_one_length(prompts, batch_size):
        tokens = np.stack([tokenizer.encode(prompt.text + prompt.answer) for prompt in batch])  # (B, N + A)
        logits, _ = model.forward(tokens[:, :-1], extrapolate=True)  # (B, N + A - 1, V)
        predicted = logits[:, N - 1:].argmax(axis=-1)  # (B, A): the prediction for each answer token
        answers.extend(tokenizer.decode(row) for row in predicted)
    model._dlogits = None
    return answers


def generate_answers(model, tokenizer, prompts: list[PasskeyPrompt], batch_size: int = 8) -> list[str]:
    """Return each prompt's answer by greedy decoding with the KV cache (``minitx.generate``).

    Slower than ``score_prompts`` (one forward per answer token) and equal to it on exact match;
    the tests check that. Prompts of one batch must share a length.
    """
    from ..generate import generate

    answers = []
    for batch, N in _batches_of_one_length(prompts, batch_size):
        tokens = np.stack([tokenizer.encode(prompt.text) for prompt in batch])  # (B, N)
        out = generate(model, tokens, 1 + KEY_DIGITS, temperature=0, extrapolate=True)  # (B, N + A)
        answers.extend(tokenizer.decode(row[N:]) for row in out)
    return answers


METHODS = {"score": score_prompts, "generate": generate_answers}


def evaluate_passkey(
    model,
    tokenizer,
    lengths,
    depths=(0.0, 0.25, 0.5, 0.75, 1.0),
    n_keys: int = 20,
    seed: int = 0,
    batch_size: int = 8,
    method: str = "score",
    progress: bool = False,
) -> dict:
    """Return the exact-match accuracy of every (length, depth) cell, with the predicted answers.

    A length N counts every token the model reads: a prompt of N - 6 tokens and the 6-token
    answer (a space and five digits), so at N = L the whole exchange fits the training window.
    The result contains ``lengths``, ``depths``, ``accuracy`` (a list per length, one value per
    depth), ``n_keys``, ``method`` and ``answers`` (per "length/depth" cell, the expected and
    the predicted answer of each key). Lengths past ``model.max_length()`` are evaluated anyway:
    that is the experiment. ``method`` is "score" (teacher-forced argmax, one forward per
    batch) or "generate" (greedy decoding with the KV cache); both give the same accuracy.
    """
    from tqdm.auto import tqdm

    if method not in METHODS:
        raise ValueError(f"method must be one of {tuple(METHODS)}, got {method!r}.")
    answer_length = 1 + KEY_DIGITS
    lengths = [check_int("length", N, minimum=MIN_LENGTH + answer_length) for N in lengths]
    depths = [check_depth(depth) for depth in depths]
    if not lengths or not depths:
        raise ValueError("lengths and depths must each contain at least one value.")
    answer_fn = METHODS[method]

    accuracy, answers = [], {}
    cells = tqdm(total=len(lengths) * len(depths), desc="passkey", disable=not progress, unit="cell")
    for N in lengths:
        row = []
        for depth in depths:
            prompts = sample_prompts(N - answer_length, depth, n_keys, seed)
            predicted = answer_fn(model, tokenizer, prompts, batch_size)
            correct = [answer == prompt.answer for answer, prompt in zip(predicted, prompts)]
            row.append(float(np.mean(correct)))
            answers[f"{N}/{depth:g}"] = [[prompt.answer.strip(), answer.strip()] for prompt, answer in zip(prompts, predicted)]
            cells.update()
        accuracy.append(row)
    cells.close()
    return {"lengths": lengths, "depths": depths, "accuracy": accuracy, "n_keys": n_keys, "seed": seed,
            "method": method, "answers": answers}
