"""reasonlab: make language models reason, and measure it.

Importing the package is cheap: heavy modules (torch, transformers) load only when a stage needs them.
"""
__version__ = "0.1.0"
