import threading
import time

import pytest

from reasonlab.grading.worker import TIMEOUT, WorkerError, WorkerPool, hang, run_with_timeout


def test_run_returns_values_and_errors():
    with WorkerPool(size=1) as pool:
        assert pool.run(divmod, (7, 2)) == (3, 1)
        err = pool.run(divmod, (7, 0))
        assert isinstance(err, WorkerError) and "ZeroDivisionError" in err.message
        assert pool.run(divmod, (9, 4)) == (2, 1)


def test_hanging_call_is_killed_and_worker_respawns():
    with WorkerPool(size=1) as pool:
        pool.run(divmod, (1, 1))  # warm up: startup is not part of the deadline
        start = time.perf_counter()
        assert pool.run(hang, timeout=0.5) is TIMEOUT
        assert time.perf_counter() - start < 2.0
        assert pool.run(divmod, (7, 2), timeout=30) == (3, 1)


def test_one_shot_timeout():
    assert run_with_timeout(hang, timeout=0.3) is TIMEOUT
    assert run_with_timeout(pow, (2, 10), timeout=30) == 1024


def test_pool_is_thread_safe():
    results = []
    with WorkerPool(size=2) as pool:
        def work(i):
            results.append(pool.run(pow, (i, 2), timeout=30))
        threads = [threading.Thread(target=work, args=(i,)) for i in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert sorted(results) == [i * i for i in range(12)]


def test_pool_size_validated():
    with pytest.raises(ValueError):
        WorkerPool(size=0)
