"""Answer extraction, the final-answer grammar, exact numeric and symbolic equivalence, hard-kill
timeouts.

Pure functions; nothing here imports torch, transformers or math-verify at import time.
"""
from reasonlab.grading.answer import Reading, read_answer
from reasonlab.grading.extract import (
    Extraction,
    answer_blocks,
    extract_final,
    last_boxed,
    scan_tags,
)
from reasonlab.grading.numeric import canonical_number, numbers_equal, parse_number
from reasonlab.grading.worker import TIMEOUT, WorkerError, WorkerPool, run_with_timeout

__all__ = ["Extraction", "answer_blocks", "extract_final", "last_boxed", "scan_tags", "Reading",
           "read_answer", "canonical_number", "numbers_equal", "parse_number", "TIMEOUT",
           "WorkerError", "WorkerPool", "run_with_timeout"]
