"""Policy backends: where a policy samples, searches and computes its training gradient.

``make_backend(model, tokenizer, name, ...)`` is the one place that looks at what kind of
model a stage holds; stages only call the ``PolicyBackend`` methods (``backends.policy``).
"""
from reasonlab.backends.policy import BACKENDS, PolicyBackend, make_backend

__all__ = ["BACKENDS", "PolicyBackend", "make_backend"]
