"""Evaluation tasks: perplexity by input length."""

from .perplexity import perplexity_by_length

__all__ = ["perplexity_by_length"]
