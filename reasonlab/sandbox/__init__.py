"""A local sandbox for untrusted programs (no Docker): namespaces when the kernel allows them,
resource limits always, and a test harness whose pass the code under test cannot forge.

Example::

    box = Sandbox(SandboxConfig())       # detects the isolation here (SandboxUnavailable if none)
    print(box.describe())                # one line: what is active
    box.run(Program("def f(x):\n    return x + 1", tests=("assert f(1) == 2",), entry_point="f"))
    SandboxPool(box).map(programs)       # many at once, results in order

* :mod:`~reasonlab.sandbox.isolation` - bwrap / unshare / none, detected by a real probe;
* :mod:`~reasonlab.sandbox.runner` - :class:`Sandbox`: one run, killed at its limits, never raises;
* :mod:`~reasonlab.sandbox.pool` - :class:`SandboxPool`: many runs in parallel;
* :mod:`~reasonlab.sandbox.child` - what runs inside: rlimits, the guard, the judge / candidate split;
* :mod:`~reasonlab.sandbox.outcome` - statuses (:data:`STATUSES`) from what was seen.

Importing this package starts nothing and imports no heavy library.
"""
from reasonlab.sandbox.config import STATUSES, Limits, Program, RunResult, SandboxConfig, SandboxUnavailable
from reasonlab.sandbox.isolation import Isolation, PythonInstall, detect
from reasonlab.sandbox.pool import SandboxPool
from reasonlab.sandbox.runner import Sandbox

__all__ = ["STATUSES", "Isolation", "Limits", "Program", "PythonInstall", "RunResult", "Sandbox",
           "SandboxConfig", "SandboxPool", "SandboxUnavailable", "detect"]
