"""The sandbox: adversarial programs end with the right status within their limit + 1 s, and the
caller, its files, its processes and the machine are unharmed; no process outlives a run."""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reasonlab.config import ConfigError
from reasonlab.sandbox import (
    STATUSES,
    Isolation,
    Limits,
    Program,
    Sandbox,
    SandboxConfig,
    SandboxPool,
    SandboxUnavailable,
)
from reasonlab.sandbox import child
from reasonlab.sandbox.isolation import PythonInstall, bwrap_command, unshare_command
from reasonlab.sandbox.outcome import Seen, classify
from reasonlab.sandbox.runner import child_env

WALL = 1.5
LIMITS = Limits(wall_s=WALL, memory_mb=512, processes=16)
SHORT = Limits(wall_s=1.0, memory_mb=512, processes=16)    # for programs that run to the limit
RUN_TO_LIMIT = {"infinite_loop", "sleep_forever", "fork_bomb"}


def make_box(isolation="auto", guard=True):
    try:
        return Sandbox(SandboxConfig(isolation=isolation, guard=guard, limits=LIMITS))
    except SandboxUnavailable as exc:
        pytest.skip(f"no {isolation} isolation here: {exc}")


@pytest.fixture(scope="module")
def box():
    return make_box("auto", guard=False)


@pytest.fixture(scope="module")
def guarded():
    return make_box("auto", guard=True)


@pytest.fixture()
def world(tmp_path):
    """What must survive: a sentinel file, a directory, a victim process, a listening socket."""
    sentinel = tmp_path / "sentinel.txt"
    sentinel.write_text("keep")
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "file").write_text("keep")
    victim = subprocess.Popen(["sleep", "60"])
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.05)
    yield {"sentinel": str(sentinel), "dir": str(tmp_path / "dir"), "victim": victim.pid,
           "port": server.getsockname()[1], "server": server, "home": os.path.expanduser("~")}
    assert sentinel.read_text() == "keep" and (tmp_path / "dir" / "file").read_text() == "keep"
    assert victim.poll() is None, "the sandboxed program killed a process of the caller"
    with pytest.raises(OSError):
        server.accept()                       # nothing connected from inside
    victim.kill()
    victim.wait()
    server.close()


ADVERSARIAL = {  # name -> (source, status without the guard, status with it)
    "infinite_loop": ("while True:\n    pass", "timeout", "timeout"),
    "sleep_forever": ("import time\ntime.sleep(1000)", "timeout", "timeout"),
    "fork_bomb": ("import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass",
                  "timeout", "sandbox_violation"),
    "alloc_10gb": ("x = bytearray(10 * 1024 ** 3)", "memory", "memory"),
    "write_outside": ("open({sentinel!r}, 'w').write('gone')", "fail", "sandbox_violation"),
    "delete_files": ("import os, shutil\nos.remove({sentinel!r})\nshutil.rmtree({dir!r})", "fail",
                     "sandbox_violation"),
    "socket": ("import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1)", "fail",
               "sandbox_violation"),
    "kill_parent": ("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n"
                    "os.kill({victim}, signal.SIGKILL)", "fail", "sandbox_violation"),
    "kill_everything": ("import os, signal\nos.kill(-1, signal.SIGKILL)\nos.kill({victim}, 9)", "fail",
                        "sandbox_violation"),
    "huge_stdout": ("while True:\n    print('x' * 100000)", "output_limit", "output_limit"),
    "huge_stderr": ("import sys\nwhile True:\n    sys.stderr.write('e' * 100000)", "output_limit",
                    "output_limit"),
    "ctypes_segfault": ("import ctypes\nctypes.string_at(0)", "crash", "sandbox_violation"),
    "escape_group": ("import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(100)\n",
                     "ok", "sandbox_violation"),
    "big_file": ("open('big', 'wb').write(b'x' * (64 << 20))", "fail", "fail"),
    "fill_memory_disks": ("for d in ('.', '/tmp', '/dev/shm'):\n    try:\n        for i in range(1000):\n"
                          "            open(f'{{d}}/f{{i}}', 'wb').write(b'x' * (8 << 20))\n"
                          "    except OSError:\n        pass\nraise SystemExit(1)", "fail", "sandbox_violation"),
    "exit_code": ("import sys\nsys.exit(3)", "fail", "fail"),
    "self_segv": ("import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)", "crash", "sandbox_violation"),
}


def check_run(sandbox, source, expected, limits=LIMITS):
    start = time.monotonic()
    result = sandbox.run(Program(source, limits=limits))
    elapsed = time.monotonic() - start
    assert result.status == expected, (result.status, result.detail, result.stderr[-300:])
    assert elapsed < limits.wall_s + 1.0, elapsed
    assert result.wall_s <= limits.wall_s + 1.0
    assert sandbox.leftover_processes() == []
    return result


@pytest.mark.parametrize("name", sorted(ADVERSARIAL))
def test_adversarial_programs_without_guard(box, world, name):
    source, expected, _ = ADVERSARIAL[name]
    check_run(box, source.format(**world), expected, SHORT if name in RUN_TO_LIMIT else LIMITS)


@pytest.mark.parametrize("name", sorted(ADVERSARIAL))
def test_adversarial_programs_with_guard(guarded, world, name):
    source, _, expected = ADVERSARIAL[name]
    result = check_run(guarded, source.format(**world), expected, SHORT if name in RUN_TO_LIMIT else LIMITS)
    if expected == "sandbox_violation":
        assert result.detail.startswith("sandbox_violation:")


def test_environment_home_and_files_of_the_caller_are_not_visible(box, world, monkeypatch):
    monkeypatch.setenv("REASONLAB_CANARY", "canary-7d1f")
    source = ("import os, json\nhome = os.path.expanduser('~')\n"
              "seen = {{'env': dict(os.environ), 'home': home, 'home_files': os.listdir(home),\n"
              "        'caller_home': os.path.exists({home!r}) and os.access({home!r}, os.R_OK),\n"
              "        'sentinel': os.path.exists({sentinel!r}), 'repo': os.path.exists({repo!r}),\n"
              "        'cwd': os.getcwd(), 'uid': os.getuid()}}\nprint(json.dumps(seen))")
    result = check_run(box, source.format(repo=os.getcwd(), **world), "ok")
    seen = json.loads(result.stdout)
    assert "canary-7d1f" not in result.stdout and "REASONLAB_CANARY" not in seen["env"]
    assert set(seen["env"]) <= set(child_env("/w", "/t")) | {"OLDPWD", "SHLVL", "_"}
    assert seen["home"] == seen["cwd"] and seen["home_files"] == []
    assert not seen["sentinel"] and not seen["repo"] and not seen["caller_home"]
    if os.geteuid() == 0:
        assert seen["uid"] != 0


def test_process_limit_holds(box):
    source = ("import os, time\nn = 0\nwhile True:\n    try:\n        pid = os.fork()\n"
              "    except OSError:\n        break\n    if pid == 0:\n        time.sleep(30)\n        os._exit(0)\n"
              "    n += 1\nprint(n)")
    result = check_run(box, source, "ok")
    assert 0 < int(result.stdout) < LIMITS.processes


def test_stdin_files_and_exit_statuses(box):
    assert box.run(Program("print(input()[::-1])", stdin="abc\n")).stdout == "cba\n"
    result = check_run(box, "open('x', 'w').write('1')\nprint(open('x').read())\nraise ValueError('no')", "fail")
    assert result.stdout == "1\n" and "ValueError: no" in result.detail
    assert box.run(Program("x = 1")).stdout == ""                      # a fresh work dir each run
    assert box.run(Program("import os\nprint(os.listdir('.'))")).stdout == "[]\n"


def test_tests_mode_pass_fail_and_token(box):
    ok = box.run(Program("def f(x):\n    return x * 2", tests=("assert f(2) == 4",) * 3, entry_point="f"))
    assert (ok.status, ok.tests) == ("ok", (True, True, True))
    bad = box.run(Program("def f(x):\n    return x", tests=("assert f(2) == 2", "assert f(2) == 4"), entry_point="f"))
    assert (bad.status, bad.tests, bad.detail) == ("fail", (True, False), "test 2 failed: assert f(2) == 4")


def test_the_code_under_test_cannot_reach_the_judge(box):
    """Without the guard too: the judge is non-dumpable, so its fds, memory and environment are
    closed to the candidate (same uid), and the report pipe is not among the candidate's fds."""
    source = ("import os\ndef f():\n    out = []\n    for part in ('fd', 'mem', 'environ'):\n"
              "        path = '/proc/%d/%s' % (os.getppid(), part)\n        try:\n"
              "            out.append(str(os.listdir(path) if part == 'fd' else open(path, 'rb').read(8)))\n"
              "        except OSError as exc:\n            out.append(type(exc).__name__)\n"
              "    print(out, sorted(os.listdir('/proc/self/fd')), flush=True)\n    return out")
    result = box.run(Program(source, tests=("assert f() == 1",), entry_point="f"))
    assert result.status == "fail"
    assert result.stdout.startswith("['PermissionError', 'PermissionError', 'PermissionError']")


def test_refuses_to_run_unisolated_without_opt_in():
    with pytest.raises(SandboxUnavailable, match="allow_unisolated"):
        Sandbox(SandboxConfig(isolation="none"))
    missing = Isolation("none", False, (("bwrap", "bwrap not installed"),))
    with pytest.raises(SandboxUnavailable, match="sandbox.isolation: bwrap does not work here"):
        Sandbox(SandboxConfig(isolation="bwrap"), isolation=missing)
    with pytest.raises(SandboxUnavailable, match="install bubblewrap"):
        Sandbox(SandboxConfig(isolation="auto"), isolation=missing)
    with pytest.raises(SandboxUnavailable, match="sandbox.isolation: unknown value"):
        Sandbox(SandboxConfig(isolation="docker"))
    with pytest.raises(ConfigError, match="sandbox.limits.wall_s: must be > 0"):
        Sandbox(SandboxConfig(limits=Limits(wall_s=0)))
    line = missing.describe()
    assert "\n" not in line and "none" in line and "NOT isolated" in line


def test_unisolated_opt_in_still_limits_and_guards(world):
    box = Sandbox(SandboxConfig(isolation="none", allow_unisolated=True, limits=LIMITS))
    assert "none" in box.describe()
    assert box.run(Program("print(1 + 1)")).stdout == "2\n"
    check_run(box, "while True:\n    pass", "timeout", SHORT)
    check_run(box, ADVERSARIAL["huge_stdout"][0], "output_limit")
    for name in ("write_outside", "delete_files", "kill_parent", "fork_bomb", "socket"):
        check_run(box, ADVERSARIAL[name][0].format(**world), "sandbox_violation")


@pytest.mark.parametrize("name", ["fork_bomb", "write_outside", "socket", "kill_everything", "escape_group"])
def test_unshare_backend(world, name):
    sandbox = make_box("unshare", guard=False)
    assert "unshare" in sandbox.describe()
    source, expected, _ = ADVERSARIAL[name]
    check_run(sandbox, source.format(**world), expected, SHORT if name in RUN_TO_LIMIT else LIMITS)


def test_pool_runs_many_programs_in_order_without_leaks(box):
    quick = Limits(wall_s=1.0, memory_mb=512, processes=16)
    kinds = [("print(7)", "ok"), ("raise SystemExit(2)", "fail"), ("while True: pass", "timeout"),
             ("import os, signal\nos.kill(os.getpid(), signal.SIGABRT)", "crash"),
             ("print('y' * 10**6)", "output_limit")]
    programs = [Program(kinds[i % len(kinds)][0], limits=quick) for i in range(20)]
    fds = len(os.listdir("/proc/self/fd"))
    start = time.monotonic()
    with SandboxPool(box, workers=4) as pool:
        results = pool.map(programs)
    assert [r.status for r in results] == [kinds[i % len(kinds)][1] for i in range(20)]
    assert time.monotonic() - start < 20
    assert box.leftover_processes() == [] and len(os.listdir("/proc/self/fd")) == fds


def test_a_broken_sandbox_gives_status_error_and_never_raises():
    broken = Sandbox(SandboxConfig(isolation="none", allow_unisolated=True),
                     python=PythonInstall("/nonexistent/python3", ()))
    result = broken.run(Program("print(1)"))
    assert result.status == "error" and "FileNotFoundError" in result.detail
    assert broken.run(Program("x", tests=("assert f()",))).status == "error"     # no entry point


def test_doctests():
    import doctest

    from reasonlab.sandbox import outcome
    assert doctest.testmod(outcome).failed == 0


def test_commands_scrub_and_isolate():
    py = PythonInstall(sys.executable, ("/opt/py",))
    cmd = bwrap_command(py, ["python", "-c", "x"], 1_950_000_000, 8)
    assert "--unshare-net" in cmd and "--unshare-pid" in cmd and "--die-with-parent" in cmd
    assert cmd[cmd.index("--ro-bind", cmd.index("/opt/py") - 2):][:3] == ["--ro-bind", "/opt/py", "/opt/py"]
    assert "--reuid=1950000000" in cmd and "--unshare-user" not in cmd
    assert "--unshare-user" in bwrap_command(py, ["python"], None, 8)
    ucmd = unshare_command(py, ["python"], None, 8)
    assert ucmd[:3] == ["unshare", "--user", "--map-root-user"] and "--net" in ucmd and "--pid" in ucmd
    env = child_env("/sandbox", "/tmp")
    assert env["HOME"] == "/sandbox" and not any(k in env for k in ("USER", "SSH_AUTH_SOCK", "LD_PRELOAD"))


def test_classify_needs_the_token_and_every_test():
    def seen(report, returncode=0, killed=None, n=2):
        lines = [{"started": 1}] + report
        return Seen(returncode, killed, "\n".join(json.dumps(x) for x in lines), "", "tok", n, True)
    ok = [{"test": 0, "ok": True, "t": "tok"}, {"test": 1, "ok": True, "t": "tok"}]
    forged = [{"test": 0, "ok": True}, {"test": 1, "ok": True, "t": "guess"}]
    assert classify(seen(forged + [{"end": "tok"}]))[:2] == ("fail", "a test failed")
    assert classify(seen(ok + [{"end": "tok"}]))[0] == "ok"
    assert classify(seen(ok + [{"end": "forged"}]))[0] == "error"
    assert classify(seen(ok))[0] == "crash"                                       # no final line
    assert classify(seen(ok[:1] + [{"end": "tok"}]))[:2] == ("fail", "a test failed")
    assert classify(seen(ok, killed="timeout"))[2] == (True, True)                # partial progress kept
    assert classify(seen([{"load_error": "SystemExit: 0"}]))[0] == "crash"
    assert classify(seen([{"violation": "sandbox_violation: os.kill"}]))[0] == "sandbox_violation"
    assert classify(seen([], returncode=128 + signal.SIGXCPU))[0] == "timeout"
    assert classify(Seen(1, None, "", "bwrap: setting up uid map: Permission denied", "t", 0, True)) \
        == ("error", "the sandbox did not start: bwrap: setting up uid map: Permission denied", ())
    assert set(STATUSES) == {"ok", "fail", "timeout", "crash", "memory", "output_limit",
                             "sandbox_violation", "error"}


plain = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5) | st.binary(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.tuples(inner, inner)
    | st.dictionaries(st.text(max_size=3) | st.integers(), inner, max_size=3), max_leaves=10)


@settings(max_examples=100, deadline=None)
@given(plain)
def test_plain_data_round_trips_exactly(value):
    back = child.decode(json.loads(json.dumps(child.encode(value))))
    assert repr(back) == repr(value) and type(back) is type(value)


def test_non_plain_values_are_refused():
    class Rigged(int):
        def __eq__(self, other):
            return True
    for value in (Rigged(1), object(), len, [1, [2, {3: Rigged(0)}]], "x".__class__):
        with pytest.raises((TypeError, ValueError)):
            child.encode(value)
    deep = []
    for _ in range(200):
        deep = [deep]
    with pytest.raises(ValueError):
        child.encode(deep)
    for bad in ({"a": 1}, ["zz", 1], ["l"], ["d", [[1]]], ["f", "nope"]):
        with pytest.raises((ValueError, TypeError)):
            child.decode(bad)
