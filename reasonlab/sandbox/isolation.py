"""Which isolation this machine allows, and the command line that applies it.

Backends, best first (``detect`` probes each by really running Python through it):

* ``bwrap`` (bubblewrap): new network, pid, ipc and uts namespaces; a root of read-only binds
  (``/usr``, the Python installation) with a fresh ``/proc``, a minimal ``/dev``, an empty
  ``/tmp`` and a size-capped tmpfs work directory, so the caller's files are not in view.
* ``unshare`` (util-linux): the same namespaces and the same kind of root, built by a short
  ``sh`` prelude (``mount``, ``pivot_root``) inside ``unshare --mount``; ``sh`` stays pid 1 of
  the namespace, so every process of the program dies with it.
* ``none``: a plain child process in its own process group with a scrubbed environment and a
  temporary work directory. Runs only when the caller opts in (``allow_unisolated``).

Unprivileged callers get a user namespace (their uid inside, no capabilities). A root caller
instead drops to a random unprivileged uid inside the namespaces (``setpriv``), because the kernel
does not apply ``RLIMIT_NPROC`` to uid 0 and a fork bomb would be unbounded. Either way the
process limit counts only the sandbox's own processes.
"""
from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

BACKENDS = ("bwrap", "unshare", "none")
CHOICES = ("auto",) + BACKENDS
WORKDIR = "/sandbox"
UID_BASE = 1_900_000_000   # random unprivileged uids for a root caller: far above real accounts
UID_SPAN = 100_000_000
PROBE_TIMEOUT_S = 20.0
PROBE_TEXT = "reasonlab-sandbox-probe"
TMP_MB = 16                # the sandbox's /tmp (tmpfs: memory, so it is capped too)
_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
_SYSTEM_FILES = ("/etc/ld.so.cache", "/etc/ld.so.conf")
_DEVICES = ("null", "zero", "full", "random", "urandom")
_SETPRIV_DROP = ("--inh-caps=-all", "--bounding-set=-all", "--no-new-privs")

UNSHARE_PRELUDE = r"""set -eu
work_mb=$1; root=$2; tmp_mb=$3; shift 3
program_path=$PATH; PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t tmpfs -o mode=0755,size=8m reasonlab-root "$root"
mkdir -p "$root/dev" "$root/proc" "$root/tmp" "$root/sandbox" "$root/.old"
while [ "$1" != "--" ]; do
  case $1 in
    link) ln -s "$2" "$root$3"; shift 3 ;;
    dir) mkdir -p "$root$2"; mount --rbind "$2" "$root$2"; mount -o remount,bind,ro "$root$2"; shift 2 ;;
    file) mkdir -p "$root${2%/*}"; touch "$root$2"; mount --bind "$2" "$root$2"; mount -o remount,bind,ro "$root$2"; shift 2 ;;
    dev) touch "$root$2"; mount --bind "$2" "$root$2"; shift 2 ;;
    *) echo "sandbox prelude: bad argument $1" >&2; exit 125 ;;
  esac
done
shift
mount -t proc proc "$root/proc"
mount -t tmpfs -o mode=0777,size=${work_mb}m reasonlab-work "$root/sandbox"
mount -t tmpfs -o mode=1777,size=${tmp_mb}m reasonlab-tmp "$root/tmp"
cd "$root"
pivot_root . .old
umount -l /.old
rmdir /.old
cd /sandbox
PATH=$program_path
set +e
"$@"
exit $?
"""


@dataclass(frozen=True)
class PythonInstall:
    """The interpreter the sandbox runs and the directories it needs to see (read-only)."""

    executable: str
    roots: tuple[str, ...]

    @classmethod
    def current(cls) -> "PythonInstall":
        exe = os.path.realpath(sys.executable)
        roots = {os.path.realpath(sys.base_prefix), os.path.realpath(sys.prefix),
                 os.path.dirname(os.path.dirname(exe))}
        roots = {r for r in roots if not any(r.startswith(d + "/") or r == d for d in _SYSTEM_DIRS)}
        nested = {r for r in roots if any(r.startswith(o + "/") for o in roots if o != r)}
        return cls(exe, tuple(sorted(roots - nested)))


@dataclass(frozen=True)
class Isolation:
    """The backend in use and, for the one-line report, why better ones were not used."""

    name: str
    root_caller: bool
    unavailable: tuple[tuple[str, str], ...] = ()

    @property
    def isolated(self) -> bool:
        return self.name != "none"

    def describe(self) -> str:
        """One line: what is active and what it gives."""
        skipped = "; ".join(f"{n}: {why}" for n, why in self.unavailable)
        who = ("root caller: runs as a random unprivileged uid" if self.root_caller
               else "runs in a user namespace without capabilities")
        if self.name == "none":
            who = ("runs as root: no process limit, full file access" if self.root_caller
                   else "runs as the caller's uid: the caller's files are readable and writable")
            return (f"sandbox isolation: none (process group, rlimits, scrubbed env, temp dir; "
                    f"network and files NOT isolated; {who})" + (f" [{skipped}]" if skipped else ""))
        return (f"sandbox isolation: {self.name} (no network; own pid namespace; only /usr and "
                f"Python read-only in view; fresh tmpfs work dir; {who})"
                + (f" [{skipped}]" if skipped else ""))


def random_uid(rng: random.Random) -> int:
    return UID_BASE + rng.randrange(UID_SPAN)


def _system_entries() -> list[tuple[str, str]]:
    """``(kind, path)`` for the system directories: ``link`` (with its target) or ``dir``."""
    out = []
    for path in _SYSTEM_DIRS:
        if os.path.islink(path):
            out.append(("link", path))
        elif os.path.isdir(path):
            out.append(("dir", path))
    return out


def bwrap_command(py: PythonInstall, argv: list[str], uid: int | None, work_mb: int) -> list[str]:
    """bubblewrap around ``argv`` (a Python command line); ``uid``: drop to it (root caller)."""
    cmd = ["bwrap", "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
           "--unshare-cgroup-try", "--die-with-parent"]
    if uid is None:
        cmd.append("--unshare-user")
    for kind, path in _system_entries():
        cmd += ["--symlink", os.readlink(path), path] if kind == "link" else ["--ro-bind", path, path]
    for path in _SYSTEM_FILES:
        cmd += ["--ro-bind-try", path, path]
    for root in py.roots:
        cmd += ["--ro-bind", root, root]
    cmd += ["--proc", "/proc", "--dev", "/dev", "--size", str(TMP_MB << 20), "--perms", "1777",
            "--tmpfs", "/tmp", "--size", str(work_mb << 20), "--perms", "0777", "--tmpfs", WORKDIR,
            "--chdir", WORKDIR, "--"]
    if uid is not None:
        cmd += ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", *_SETPRIV_DROP, "--"]
    return cmd + argv


def unshare_command(py: PythonInstall, argv: list[str], uid: int | None, work_mb: int) -> list[str]:
    """``unshare`` + the ``sh`` prelude around ``argv``; ``uid``: drop to it (root caller)."""
    cmd = ["unshare", "--mount", "--net", "--pid", "--ipc", "--uts", "--fork", "--kill-child"]
    if uid is None:
        cmd[1:1] = ["--user", "--map-root-user"]
    binds: list[str] = []
    for kind, path in _system_entries():
        binds += ["link", os.readlink(path), path] if kind == "link" else ["dir", path]
    for path in _SYSTEM_FILES:
        if os.path.isfile(path):
            binds += ["file", path]
    for root in py.roots:
        binds += ["dir", root]
    for name in _DEVICES:
        binds += ["dev", f"/dev/{name}"]
    ids = [f"--reuid={uid}", f"--regid={uid}", "--clear-groups"] if uid is not None else []
    drop = ["setpriv", *ids, *_SETPRIV_DROP, "--"]
    settings = [str(work_mb), staging_dir(py), str(TMP_MB)]
    return cmd + ["sh", "-c", UNSHARE_PRELUDE, "sh", *settings, *binds, "--", *drop, *argv]


def staging_dir(py: PythonInstall) -> str:
    """An existing directory to mount the new root on (in the private mount namespace only)."""
    for path in ("/mnt", "/media", "/srv", "/opt", "/tmp", "/var/tmp"):
        if os.path.isdir(path) and not any(r == path or r.startswith(path + "/") for r in py.roots):
            return path
    return "/tmp"


def command_for(name: str, py: PythonInstall, argv: list[str], uid: int | None, work_mb: int) -> list[str]:
    if name == "bwrap":
        return bwrap_command(py, argv, uid, work_mb)
    if name == "unshare":
        return unshare_command(py, argv, uid, work_mb)
    return list(argv)


def _missing_tool(name: str) -> str | None:
    tools = {"bwrap": ("bwrap", "setpriv"), "unshare": ("unshare", "setpriv", "mount", "pivot_root", "sh")}
    for tool in tools[name]:
        if shutil.which(tool) is None:
            return f"{tool} not installed"
    return None


def probe(name: str, py: PythonInstall, root_caller: bool, work_mb: int = 8) -> str | None:
    """None when ``name`` runs Python here, else one short reason."""
    missing = _missing_tool(name)
    if missing:
        return missing
    uid = random_uid(random.Random()) if root_caller else None
    argv = [py.executable, "-s", "-S", "-c", f"print({PROBE_TEXT!r})"]
    try:
        done = subprocess.run(command_for(name, py, argv, uid, work_mb), capture_output=True,
                              timeout=PROBE_TIMEOUT_S, env={"PATH": "/usr/bin:/bin"},
                              stdin=subprocess.DEVNULL, start_new_session=True)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"failed to start ({type(exc).__name__})"
    if PROBE_TEXT.encode() in done.stdout:
        return None
    why = done.stderr.decode(errors="replace").strip().splitlines()
    return (why[-1] if why else f"exit status {done.returncode}")[:160]


def detect(choice: str, py: PythonInstall, root_caller: bool | None = None) -> Isolation:
    """The first backend of ``choice`` (``auto``: bwrap, then unshare, then none) that works."""
    root_caller = os.geteuid() == 0 if root_caller is None else root_caller
    names = ("bwrap", "unshare") if choice == "auto" else (choice,)
    unavailable = []
    for name in names:
        if name == "none":
            return Isolation("none", root_caller)
        why = probe(name, py, root_caller)
        if why is None:
            return Isolation(name, root_caller, tuple(unavailable))
        unavailable.append((name, why))
    return Isolation("none", root_caller, tuple(unavailable))


def find_processes(marker: str) -> list[int]:
    """Pids (other than ours) whose command line contains ``marker``."""
    needle, out = marker.encode(), []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "cmdline").read_bytes():
                out.append(int(entry.name))
        except OSError:
            continue
    return out
