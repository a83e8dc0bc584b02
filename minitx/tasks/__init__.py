"""Evaluation tasks: perplexity by input length, passkey retrieval, and the Self-Extend G x W sweep."""

from .passkey import evaluate_passkey, make_prompt, sample_prompts
from .perplexity import perplexity_by_length
from .sweep import sweep_self_extend

__all__ = ["evaluate_passkey", "make_prompt", "perplexity_by_length", "sample_prompts", "sweep_self_extend"]
