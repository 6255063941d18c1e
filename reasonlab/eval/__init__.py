"""Evaluation: metrics (pass@k, maj@k, bootstrap CIs, summaries) and plots rendered from artifacts.

``reasonlab.eval.metrics`` needs only numpy; ``reasonlab.eval.plots`` imports matplotlib lazily.
"""
from reasonlab.eval.metrics import (bootstrap_ci, maj_at_k, majority_vote, pass_at_k,
                                    pass_at_k_array, summarize_samples)

__all__ = ["bootstrap_ci", "maj_at_k", "majority_vote", "pass_at_k", "pass_at_k_array",
           "summarize_samples"]
