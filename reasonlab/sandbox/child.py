"""The program that runs inside the sandbox: resource limits, the guard, then the user's program
or the tests. Standard library only: it is sent as ``python -s -S -c <this file>`` and never
imports reasonlab (the sandbox has no view of it).

argv: ``marker spec_fd report_fd``. ``spec_fd`` carries frames (8-byte big-endian length, then
JSON): frame 1 (public) ``{"mode", "source", "entry_point", "limits", "guard", "workdir"}``;
frame 2, tests mode only, ``{"token", "setup", "tests"}``, read by the judge after the fork, so the
untrusted code never holds the tests or the token. ``report_fd`` gets JSON lines for the parent:
``{"started": 1}`` first, then (tests mode) one line per test and a final line, each carrying
the token.

Tests mode forks two processes. The *candidate* closes the spec and report fds, installs the
guard, runs the untrusted code and then only answers calls: plain data in (JSON with tags), plain
data out; whatever it patches (``assert``, ``unittest``, builtins, ``sys.exit``) stays in its own
process. The *judge* (trusted: the dataset's setup and test code) is made non-dumpable (no
``/proc/<pid>/mem`` or fd access for the candidate), binds ``candidate`` and the entry-point name to
a proxy, runs each test and reports it; a value that is not plain data (a subclass with a rigged
``__eq__``, a function) fails the call. The parent counts a pass only from the judge's final line
with the per-run token.

The guard is an audit hook (an extra layer, never the only one): processes, signals, sockets,
ctypes, resource limits, and writes, deletes or renames outside the work directory end the process
at once with exit code ``VIOLATION_EXIT`` (an exception could be caught by the code).
"""
import builtins
import json
import os
import resource
import struct
import sys
import time

VIOLATION_EXIT = 97
MEMORY_EXIT = 98
SETUP_EXIT = 99
MAX_REPLY_BYTES = 16 << 20
MAX_DEPTH = 100
_LEN = struct.Struct(">Q")

BLOCKED_EVENTS = frozenset((
    "os.kill", "os.killpg", "signal.pthread_kill", "os.fork", "os.forkpty", "os.posix_spawn",
    "os.spawn", "os.exec", "os.system", "subprocess.Popen", "pty.spawn", "os.setuid", "os.setgid",
    "socket.__new__", "socket.connect", "socket.bind", "socket.getaddrinfo", "socket.gethostbyname",
    "socket.sendto", "ctypes.dlopen", "ctypes.dlsym", "ctypes.cdata", "ctypes.addressof",
    "ctypes.string_at", "ctypes.wstring_at", "ctypes.PyObj_FromPtr", "ctypes.call_function",
    "resource.setrlimit", "resource.prlimit", "os.chroot", "os.chown", "shutil.chown",
))
PATH_EVENTS = {  # event -> indexes of its path arguments
    "os.remove": (0,), "os.rmdir": (0,), "os.rename": (0, 1), "os.link": (0, 1),
    "os.symlink": (0, 1), "os.truncate": (0,), "os.chmod": (0,), "os.mkdir": (0,),
    "os.utime": (0,), "shutil.rmtree": (0,), "shutil.move": (0, 1), "shutil.copyfile": (1,),
    "shutil.copytree": (1,), "os.mkfifo": (0,), "os.mknod": (0,),
}
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


# ---- framing and the report ----------------------------------------------------------------
def read_exact(fd, size):
    data = b""
    while len(data) < size:
        chunk = os.read(fd, size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def read_frame(fd, limit=MAX_REPLY_BYTES):
    """One frame's bytes; None at EOF or when it announces more than ``limit`` bytes."""
    head = read_exact(fd, _LEN.size)
    if head is None:
        return None
    size = _LEN.unpack(head)[0]
    return None if size > limit else read_exact(fd, size)


def write_frame(fd, payload):
    data = _LEN.pack(len(payload)) + payload
    while data:
        data = data[os.write(fd, data):]


def report(fd, **fields):
    line = (json.dumps(fields) + "\n").encode()
    while line:
        line = line[os.write(fd, line):]


# ---- limits and guard ------------------------------------------------------------------------
def uid_tasks(uid):
    """Tasks (threads) the uid runs now: what RLIMIT_NPROC counts outside a namespace."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as handle:
                fields = dict(line.split(":", 1) for line in handle if ":" in line)
            if int(fields["Uid"].split()[0]) == uid:
                total += int(fields["Threads"])
        except (OSError, KeyError, ValueError):
            continue
    return total


def set_limits(limits, relative_nproc=False):
    """``{"RLIMIT_CPU": [soft, hard], ...}``; a hard limit above the current one is clamped.
    ``relative_nproc`` (no namespace: the kernel counts every process of the uid): the process
    limit is added to what the uid already runs."""
    if relative_nproc and "RLIMIT_NPROC" in limits:
        base = uid_tasks(os.getuid())
        limits = {**limits, "RLIMIT_NPROC": [v + base for v in limits["RLIMIT_NPROC"]]}
    for name, (soft, hard) in limits.items():
        which = getattr(resource, name)
        _, cur_hard = resource.getrlimit(which)
        if cur_hard != resource.RLIM_INFINITY:
            hard = min(hard, cur_hard)
        resource.setrlimit(which, (min(soft, hard), hard))


def _inside(path, workdir):
    if isinstance(path, int):
        return True  # an open file descriptor: limited by RLIMIT_FSIZE, not by path
    try:
        text = os.path.abspath(os.fsdecode(path))
    except (TypeError, ValueError):
        return False
    return text == workdir or text.startswith(workdir + "/") or text == "/dev/null"


def install_guard(workdir, on_violation):
    """An audit hook that calls ``on_violation(event)`` (which must end the process)."""
    blocked, path_events, inside = BLOCKED_EVENTS, PATH_EVENTS, _inside

    def hook(event, args):
        if event in blocked:
            on_violation(event)
        elif event == "open":
            path, mode, flags = (tuple(args) + (None, None, 0))[:3]
            writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or \
                (isinstance(flags, int) and flags & _WRITE_FLAGS)
            if writes and not inside(path, workdir):
                on_violation(f"open for writing {str(path)[:80]}")
        elif event in path_events:
            for i in path_events[event]:
                if i < len(args) and not inside(args[i], workdir):
                    on_violation(f"{event} {str(args[i])[:80]}")

    sys.addaudithook(hook)


def violation_exit(stderr_fd, reply_fd=None):
    def on_violation(what):
        message = f"sandbox_violation: {what}"
        try:
            os.write(stderr_fd, (message + "\n").encode(errors="replace"))
            if reply_fd is not None:
                write_frame(reply_fd, json.dumps({"violation": message}).encode())
        finally:
            os._exit(VIOLATION_EXIT)
    return on_violation


# ---- plain data over JSON ----------------------------------------------------------------------
def encode(value, depth=0):
    """JSON-ready form of plain data (exact builtin types only); TypeError/ValueError otherwise."""
    if depth > MAX_DEPTH:
        raise ValueError("nested too deeply")
    kind = type(value)
    if value is None or kind is bool or kind is str:
        return value
    if kind is int:
        return value if -(1 << 53) < value < (1 << 53) else ["I", hex(value)]
    if kind is float:
        return ["f", value.hex()]
    if kind is complex:
        return ["c", value.real.hex(), value.imag.hex()]
    if kind is bytes:
        return ["b", value.hex()]
    tag = {list: "l", tuple: "t", set: "s", frozenset: "F"}.get(kind)
    if tag is not None:
        return [tag, [encode(v, depth + 1) for v in value]]
    if kind is dict:
        return ["d", [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in value.items()]]
    raise TypeError(f"a value of type {kind.__name__} is not plain data")


def decode(data, depth=0):
    """Inverse of :func:`encode`, building fresh objects; ValueError for anything else."""
    if depth > MAX_DEPTH:
        raise ValueError("nested too deeply")
    kind = type(data)
    if data is None or kind in (bool, int, str):
        return data
    if kind is not list or not data or data[0] not in _DECODERS:
        raise ValueError("malformed value")
    return _DECODERS[data[0]](data, depth + 1)


def _items(data, depth):
    if len(data) != 2 or type(data[1]) is not list:
        raise ValueError("malformed container")
    return [decode(v, depth) for v in data[1]]


def _pairs(data, depth):
    if len(data) != 2 or type(data[1]) is not list:
        raise ValueError("malformed dict")
    out = {}
    for pair in data[1]:
        if type(pair) is not list or len(pair) != 2:
            raise ValueError("malformed dict")
        out[decode(pair[0], depth)] = decode(pair[1], depth)
    return out


_DECODERS = {
    "I": lambda d, _: int(d[1], 16), "f": lambda d, _: float.fromhex(d[1]),
    "c": lambda d, _: complex(float.fromhex(d[1]), float.fromhex(d[2])),
    "b": lambda d, _: bytes.fromhex(d[1]), "l": _items, "t": lambda d, k: tuple(_items(d, k)),
    "s": lambda d, k: set(_items(d, k)), "F": lambda d, k: frozenset(_items(d, k)), "d": _pairs,
}


def describe(exc):
    try:
        text = str(exc)
    except Exception:  # noqa: BLE001 - a hostile __str__
        text = "?"
    return f"{type(exc).__name__}: {text}"[:300]


# ---- program mode ----------------------------------------------------------------------------
def run_program(spec):
    """Run the source as ``__main__``; exit status as ``python file.py`` would give it."""
    namespace = {"__name__": "__main__", "__builtins__": builtins}
    try:
        exec(compile(spec["source"], "main.py", "exec"), namespace)
    except SystemExit as exc:
        code = exc.code
        if code is None or isinstance(code, int):
            return code or 0
        print(code, file=sys.stderr)
        return 1
    except MemoryError:
        return MEMORY_EXIT
    except BaseException:  # noqa: BLE001 - the program's own error: traceback and status 1
        import traceback
        traceback.print_exc()
        return 1
    return 0


# ---- tests mode: the candidate ----------------------------------------------------------------
def candidate_main(spec, requests, replies):
    """Run the untrusted code, then answer calls until EOF. Never returns."""
    if spec.get("guard", True):
        install_guard(spec["workdir"], violation_exit(2, replies))
    if read_frame(requests) is None:                 # the judge's go: it has read its secrets
        os._exit(0)
    namespace = {"__name__": "__main__", "__builtins__": builtins}
    try:
        exec(compile(spec["source"], "solution.py", "exec"), namespace)
        function = namespace.get(spec["entry_point"])
        first = {"ready": 1} if callable(function) else {"missing": spec["entry_point"]}
    except MemoryError:
        first = {"load_error": "MemoryError", "memory": 1}
    except BaseException as exc:  # noqa: BLE001 - SyntaxError, SystemExit, anything: not loaded
        first = {"load_error": describe(exc)}
    write_frame(replies, json.dumps(first).encode())
    if "ready" not in first:
        os._exit(0)
    while True:
        request = read_frame(requests)
        if request is None:
            os._exit(0)
        try:
            args, kwargs = (decode(x) for x in json.loads(request))
            reply = {"value": encode(function(*args, **kwargs))}
        except MemoryError:
            reply = {"raised": "MemoryError", "memory": 1}
        except BaseException as exc:  # noqa: BLE001 - incl. SystemExit: the call failed
            reply = {"raised": describe(exc)}
        try:
            payload = json.dumps(reply).encode()
        except (TypeError, ValueError, RecursionError) as exc:
            payload = json.dumps({"raised": describe(exc)}).encode()
        write_frame(replies, payload)


# ---- tests mode: the judge ------------------------------------------------------------------
class CandidateError(Exception):
    """The candidate's function raised, or returned something that is not plain data."""


class CandidateGone(Exception):
    """The candidate process ended or broke the protocol."""


def make_proxy(to_candidate, from_candidate, state):
    def candidate(*args, **kwargs):
        if state.get("gone"):
            raise CandidateGone(state["gone"])
        try:
            request = json.dumps([encode(list(args)), encode(dict(kwargs))]).encode()
        except (TypeError, ValueError) as exc:
            raise TypeError(f"the test passes a value the sandbox cannot send: {exc}") from None
        try:
            write_frame(to_candidate, request)
            raw = read_frame(from_candidate)
            reply = json.loads(raw) if raw is not None else None
        except (OSError, ValueError, RecursionError):
            reply = None
        if not isinstance(reply, dict):
            state["gone"] = "the code's process ended during a test"
            raise CandidateGone(state["gone"])
        if "violation" in reply:
            state["gone"] = reply["violation"]
            state["violation"] = 1
            raise CandidateGone(state["gone"])
        if "raised" in reply:
            state["memory"] = state.get("memory") or reply.get("memory")
            raise CandidateError(str(reply["raised"]))
        try:
            return decode(reply.get("value"))
        except (ValueError, TypeError, RecursionError, OverflowError):
            raise CandidateError("the function returned a malformed value") from None
    return candidate


def set_non_dumpable():
    """No ptrace, ``/proc/<pid>/mem`` or ``/proc/<pid>/fd`` access for same-uid processes."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE = 4
    except (OSError, AttributeError, ImportError):
        pass


def first_line(text):
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return (lines[0] if lines else "")[:160]


def run_one_test(index, test, namespace):
    """``(passed, message)``; CandidateGone propagates."""
    try:
        exec(compile(test, f"<test {index + 1}>", "exec"), namespace)
        return True, ""
    except CandidateGone:
        raise
    except AssertionError:
        return False, f"test {index + 1} failed: {first_line(test)}"
    except CandidateError as exc:
        return False, f"test {index + 1}: the function raised {exc} ({first_line(test)})"
    except Exception as exc:  # noqa: BLE001 - the test's own error with this candidate
        return False, f"test {index + 1}: {describe(exc)} ({first_line(test)})"


def judge_main(spec, spec_fd, report_fd, pid, to_candidate, from_candidate):
    set_non_dumpable()
    raw = read_frame(spec_fd)
    os.close(spec_fd)
    secret = json.loads(raw)
    namespace = {"__name__": "__judge__", "__builtins__": builtins}
    try:
        exec(compile(secret["setup"], "<setup>", "exec"), namespace)
    except Exception as exc:  # noqa: BLE001 - the dataset row is broken, not the candidate
        report(report_fd, setup_error=describe(exc))
        return
    state = {}
    try:
        write_frame(to_candidate, b"go")
        raw = read_frame(from_candidate)
        first = json.loads(raw) if raw is not None else {"gone": 1}
    except (OSError, ValueError):
        first = {"gone": 1}
    if "ready" not in first:
        fields = {k: v for k, v in first.items()
                  if k in ("load_error", "missing", "violation", "memory", "gone")}
        report(report_fd, signal=candidate_signal(pid) if "gone" in first else 0, **fields)
        return
    proxy = make_proxy(to_candidate, from_candidate, state)
    namespace["candidate"] = namespace[spec["entry_point"]] = proxy
    for index, test in enumerate(secret["tests"]):
        try:
            passed, message = run_one_test(index, test, namespace)
        except CandidateGone:
            break
        report(report_fd, test=index, ok=passed, msg=message, t=secret["token"])
    report(report_fd, end=secret["token"], gone=state.get("gone", ""),
           violation=state.get("violation", 0), memory=state.get("memory", 0),
           signal=candidate_signal(pid) if state.get("gone") else 0)


def candidate_signal(pid, wait_s=0.5):
    """The signal that ended the candidate (0: exited, or still running after ``wait_s``)."""
    for _ in range(int(wait_s / 0.01)):
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return 0
        if done:
            return os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0
        time.sleep(0.01)
    return 0


def run_tests(spec, spec_fd, report_fd):
    req_r, req_w = os.pipe()
    rep_r, rep_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            for fd in (spec_fd, report_fd, req_w, rep_r):
                os.close(fd)
            candidate_main(spec, req_r, rep_w)
        finally:
            os._exit(SETUP_EXIT)
    for fd in (req_r, rep_w):
        os.close(fd)
    try:
        judge_main(spec, spec_fd, report_fd, pid, req_w, rep_r)
    finally:
        os.close(req_w)                  # EOF: the candidate exits
        try:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        except OSError:
            pass
    return 0


def main(argv):
    spec_fd, report_fd = int(argv[2]), int(argv[3])
    sys.path[:] = [p for p in sys.path if p not in ("", ".")]
    report(report_fd, started=1)
    spec = json.loads(read_frame(spec_fd))
    set_limits(spec["limits"], spec.get("relative_nproc", False))
    if spec["mode"] == "tests":
        code = run_tests(spec, spec_fd, report_fd)
        sys.stdout.flush()
        os._exit(code)
    os.close(spec_fd)
    os.close(report_fd)
    if spec.get("guard", True):
        install_guard(spec["workdir"], violation_exit(2))
    return run_program(spec)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
