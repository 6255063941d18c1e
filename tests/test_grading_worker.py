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


def test_pool_grows_so_a_stuck_call_does_not_block_others():
    with WorkerPool(size=3) as pool:
        pool.run(divmod, (1, 1))  # start the template (not part of any deadline)
        stuck = [threading.Thread(target=pool.run, args=(hang,), kwargs={"timeout": 1.0})
                 for _ in range(2)]
        for thread in stuck:
            thread.start()
        time.sleep(0.2)
        start = time.perf_counter()
        assert pool.run(pow, (3, 2), timeout=1.0) == 9  # a third worker is forked
        assert time.perf_counter() - start < 0.5
        for thread in stuck:
            thread.join()


def test_waiting_for_a_worker_counts_against_the_deadline():
    with WorkerPool(size=1) as pool:
        pool.run(divmod, (1, 1))
        stuck = threading.Thread(target=pool.run, args=(hang,), kwargs={"timeout": 1.2})
        stuck.start()
        time.sleep(0.2)
        start = time.perf_counter()
        assert pool.run(pow, (3, 2), timeout=0.3) is TIMEOUT
        assert time.perf_counter() - start < 1.0
        stuck.join()
        assert pool.run(pow, (3, 2), timeout=5.0) == 9


def test_template_killed_from_outside_is_restarted():
    with WorkerPool(size=2) as pool:
        pool.run(divmod, (1, 1))
        pool._template._proc.kill()
        pool._template._proc.wait()
        results = {pool.run(pow, (2, 5), timeout=30.0) for _ in range(3)}
        assert results == {32}


def test_close_kills_every_worker():
    import os
    pool = WorkerPool(size=2)
    pids = []
    for _ in range(2):
        pool.run(divmod, (1, 1))
    pids = [w.pid for w in pool._idle]
    assert pids and all(_alive(pid) for pid in pids)
    pool.close()
    time.sleep(0.2)
    assert not any(_alive(pid) for pid in pids), os.getpid()


def _alive(pid: int) -> bool:
    import os
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
