"""Watching an imgsearch writer from outside, for scripts/faults.py: the child process and its
output, its own children, who holds the index's lock, the phase a stopped writer is in, the
manifests it commits, and what it leaves in the index folder.

Linux only: it reads /proc (``stat``, ``cmdline``, ``fd``, ``fdinfo``, ``locks``).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path


class Child:
    """A child process whose output lines are collected as they come."""

    def __init__(self, cmd: list[str]) -> None:
        self.start = time.monotonic()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.out: list[str] = []
        self.err: list[str] = []
        self.ready, self.done = threading.Event(), threading.Event()
        self.ready_at = self.done_at = self.start
        self._readers = [
            threading.Thread(target=self._read, args=(s, lines), daemon=True)
            for s, lines in ((self.proc.stdout, self.out), (self.proc.stderr, self.err))
        ]
        for t in self._readers:
            t.start()

    def _read(self, stream, lines: list[str]) -> None:
        for line in stream:
            line = line.rstrip("\n")
            lines.append(line)
            if line.startswith("ready "):  # CLOCK_MONOTONIC is one clock for all processes
                self.ready_at = float(line.split()[1])
                self.ready.set()
            elif line.startswith(("done", "added ")):  # a child's last line; the CLI's summary
                self.done_at = time.monotonic()
                self.done.set()

    def finish(self, timeout: float) -> int | None:
        """Exit code, or None when it had to be killed after ``timeout`` seconds."""
        try:
            rc: int | None = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            rc = None
        for t in self._readers:
            t.join(5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
        return rc

    def said(self, prefix: str) -> list[str]:
        return [line[len(prefix) :] for line in self.out if line.startswith(prefix)]


def stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat from the state on (state, ppid, ...), or None when it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def alive(pid: int) -> bool:
    f = stat_fields(pid)
    return f is not None and f[0] not in ("Z", "X")


def children(pid: int) -> list[int]:
    """Live child processes of ``pid`` (by their parent pid: /proc/PID/task/*/children is not
    always compiled in)."""
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit() and (f := stat_fields(int(p.name))) and f[1] == str(pid) and f[0] not in "ZX":
            out.append(int(p.name))
    return out


def processes_of(ix: Path) -> list[int]:
    """Live processes other than this one with ``ix`` as an argument (a writer and its forks)."""
    target, out = os.fsencode(ix), []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit() or int(p.name) == os.getpid():
            continue
        try:
            if target in (p / "cmdline").read_bytes().split(b"\0") and alive(int(p.name)):
                out.append(int(p.name))
        except OSError:
            pass
    return out


def lock_holders(ix: Path, name: str = "LOCK") -> set[int]:
    """Pids holding a POSIX lock on ``ix/<name>`` (``LOCK``, or ``MERGE``; from /proc/locks)."""
    try:
        st = os.stat(ix / name)
    except OSError:
        return set()
    where = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    holders = set()
    for line in Path("/proc/locks").read_text().splitlines():
        f = line.split()
        if len(f) >= 6 and "->" not in f and f[1] == "POSIX" and f[5] == where:
            holders.add(int(f[4]))
    return holders


def phase_of(pid: int, ix: Path, kind: str, done: bool) -> str:
    """What the stopped writer ``pid`` was doing, from its open files, the folder and its lock."""
    fds: dict[str, str] = {}
    with contextlib.suppress(OSError):  # an exited process has none
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                fds[fd.name] = os.readlink(fd)
    segs, manifest_tmp = f"{ix}/segments/", f"{ix}/manifest.json.tmp-"
    for target in fds.values():
        if target.startswith(segs) and ".tmp-" in target:
            return f"{_file_kind(target, kind)}-write"
        if target.startswith(manifest_tmp):
            return "manifest-write"
    for tmp in (ix / "segments").glob(f"*.tmp-{pid}"):  # written and flushed, not yet renamed
        return f"{_file_kind(str(tmp), kind)}-rename"
    if (ix / f"manifest.json.tmp-{pid}").exists():
        return "manifest-rename"
    for fd, target in fds.items():
        if target in (str(ix), segs[:-1]):
            try:
                flags = int(Path(f"/proc/{pid}/fdinfo/{fd}").read_text().split("flags:")[1].split()[0], 8)
            except (OSError, IndexError, ValueError):
                flags = 0
            # scandir opens folders with O_DIRECTORY (collect_garbage), sync_folder without.
            return "gc-scan" if flags & os.O_DIRECTORY else "folder-sync"
    if pid not in lock_holders(ix):  # add_bytes extracts before it takes the lock
        if pid in lock_holders(ix, "MERGE"):  # merging after the commit, the writer lock let go
            return "merge-read"
        return (
            "after" if done else {"build": "startup", "add_bytes": "extraction"}.get(kind, "between-commits")
        )
    if children(pid):
        return "extraction"
    return "merge-read" if kind == "compact" else "between-commits"


def _file_kind(path: str, kind: str) -> str:
    if ".del-" in path:
        return "tombstone"
    if kind == "compact":
        return "merge"
    try:  # a merged segment's header says what it merges (see imgsearch.store.container)
        with open(path.removesuffix(" (deleted)"), "rb") as f:
            head = f.read(1 << 16)
        meta = json.loads(head[32 : 32 + int.from_bytes(head[12:16], "little")])["meta"]
        return "merge" if "merged" in meta else "segment"
    except (OSError, ValueError, KeyError):
        return "segment"


def stop_and_kill(child: Child, ix: Path, kind: str) -> tuple[str, list[int]]:
    """SIGSTOP the child, read its phase and its workers, SIGKILL it; (phase, worker pids)."""
    pid = child.proc.pid
    if child.proc.poll() is not None:
        return "after", []
    os.kill(pid, signal.SIGSTOP)  # an exited, unreaped child takes signals too: no pid reuse
    for _ in range(200):  # a process inside a system call stops when it returns
        if (f := stat_fields(pid)) is None or f[0] in "TtZX":
            break
        time.sleep(0.001)
    phase = phase_of(pid, ix, kind, child.done.is_set())
    workers = children(pid)
    os.kill(pid, signal.SIGKILL)
    child.finish(30)
    return phase, workers


class Watcher(threading.Thread):
    """Records every manifest generation seen in ``ix`` (polled) as its (segment, tombstones) list."""

    def __init__(self, ix: Path) -> None:
        super().__init__(daemon=True)
        self.ix, self.seen, self.halt = ix, {}, threading.Event()
        self.look()

    def run(self) -> None:
        while not self.halt.wait(0.005):
            self.look()

    def look(self) -> None:
        try:
            data = json.loads((self.ix / "manifest.json").read_text())
        except (OSError, ValueError):  # absent yet; a damaged one is the checks' business
            return
        self.seen.setdefault(data["generation"], [(s["name"], s.get("tombstones")) for s in data["segments"]])

    def stop(self) -> dict[int, list]:
        self.halt.set()
        self.join()
        self.look()
        return self.seen


# -- the index as a set of paths -----------------------------------------------------------
def manifest_paths(ix: Path, entries: list, cache: dict) -> set[str]:
    """Live paths (keys) of the manifest whose segments are ``entries``."""
    import numpy as np

    from imgsearch.store.reader import read_tombstones
    from imgsearch.store.segment import Segment

    out: set[str] = set()
    for name, tombstones in entries:
        if (name, tombstones) not in cache:
            segment = Segment(ix / "segments" / name)
            paths, n = segment.paths(), segment.n
            segment.close()
            dead = read_tombstones(ix / "segments" / tombstones, n) if tombstones else np.zeros(n, bool)
            cache[name, tombstones] = {p for p, d in zip(paths, dead, strict=True) if not d}
        out |= cache[name, tombstones]
    return out


def live_digests(ix: Path) -> tuple[dict[str, bytes], list[str]]:
    """``{path: stored digest}`` of the live images and the problems ``Index.verify`` reports."""
    from imgsearch import Index

    with Index.open(ix) as index:
        problems = index.verify()
        ids = index.reader.live_ids()
        return {index.path_of(int(g)): index.reader.value("digest", int(g)).tobytes() for g in ids}, problems


def leftovers(ix: Path) -> list[str]:
    """Files of the index folder its manifest neither names nor retires."""
    from imgsearch.store import manifest as mf

    m = mf.read(ix)
    keep = m.named() | {name for name, _ in m.retired}
    extra = [p.name for p in ix.iterdir() if p.name not in ("manifest.json", "LOCK", "MERGE", "segments")]
    return extra + [f"segments/{p.name}" for p in (ix / "segments").iterdir() if p.name not in keep]


def watch_build(child: Child, timeout: float = 600) -> tuple[float, float, float, int | None]:
    """Wait for a build: (seconds, first and last time its workers were seen, exit code or None
    when it had to be killed after ``timeout`` seconds)."""
    seen = []
    while child.proc.poll() is None and time.monotonic() - child.start < timeout:
        if children(child.proc.pid):
            seen.append(time.monotonic() - child.start)
        time.sleep(0.01)
    seconds = time.monotonic() - child.start
    return seconds, min(seen, default=0.0), max(seen, default=0.0), child.finish(0)
