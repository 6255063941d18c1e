"""Answer extraction, exact numeric and symbolic equivalence, hard-kill timeouts.

Pure functions; nothing here imports torch, transformers or math-verify at import time.
"""
from reasonlab.grading.extract import Extraction, extract_final, last_boxed, scan_tags
from reasonlab.grading.numeric import canonical_number, numbers_equal, parse_number
from reasonlab.grading.worker import TIMEOUT, WorkerError, WorkerPool, run_with_timeout

__all__ = ["Extraction", "extract_final", "last_boxed", "scan_tags", "canonical_number",
           "numbers_equal", "parse_number", "TIMEOUT", "WorkerError", "WorkerPool",
           "run_with_timeout"]
