import doctest
import importlib

import pytest

MODULES = ["reasonlab.grading.numeric", "reasonlab.grading.extract", "reasonlab.grading.expr",
           "reasonlab.grading.answer", "reasonlab.tasks.data", "reasonlab.tasks.gsm8k",
           "reasonlab.grading.symbolic", "reasonlab.grading.worker", "reasonlab.tasks",
           "reasonlab.tasks.base", "reasonlab.tasks.prompts", "reasonlab.verifiers.mc_labels",
           "reasonlab.verifiers.oracle"]


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name):
    result = doctest.testmod(importlib.import_module(name))
    assert result.failed == 0
