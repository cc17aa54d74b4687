"""Fault injection: ``kill -9`` imgsearch writers at random moments and check what they leave.

Each trial copies a prepared index, starts one operation in its own process and kills it with
SIGKILL after a uniformly random delay within the operation's measured duration:

* ``build``     ``imgsearch build PHOTOS --checkpoint 20`` into a new index;
* ``add``       ``Index.add`` of a few files (checkpoint 3, extraction workers) to a partial index;
* ``remove``    ``Index.remove`` of a few images, one call (one commit) each, each printed when done;
* ``compact``   ``Index.compact`` of an index with several segments and removed rows;
* ``add_bytes`` ``Index.add_bytes`` of a few uploads, each key printed once its call returned;
* ``worker``    ``imgsearch build`` with one extraction worker killed alone: the build must finish,
  with only that worker's files failed.

The n trials of a kind take one of n equal slices of its duration each, in random order (the
duration is the median of its last measurements, repeated each round of trials: the machine's load
moves it). The victim is stopped (SIGSTOP) at the chosen moment, the phase it was in read from its open
files, the index folder and ``/proc/locks``, and then killed; a kill that finds the operation over
is checked too but drawn again, so that ``--trials`` kills land inside operations. After each kill:
``Index.open`` works; ``Index.verify()`` finds nothing; every acknowledged image is live (an image
is acknowledged when a manifest naming it was seen before the kill, or its call returned and was
printed) and no acknowledged removal is undone; live images are only ones the operation was given,
each with the digest of its file; no process holds the lock and none of the victim's workers
survives; the next ``imgsearch build PHOTOS`` succeeds with every photo indexed once, and leaves in
the folder only the files its manifest names or retires.

    .venv/bin/python scripts/faults.py --json scripts/results/faults.json     # 200 photos, 60 trials
    .venv/bin/python scripts/faults.py tests/data --trials 6                   # one trial of each kind
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

KINDS = ("build", "add", "remove", "compact", "add_bytes", "worker")
FAILURES = ("corrupt", "lost", "undone", "stale_lock", "orphans", "next_build", "leftovers", "errors")
CHECKPOINT = 20  # images a killed build commits at a time
SMALL = 10  # files an add or add_bytes trial writes
REMOVED = 5  # images a remove trial removes
ORPHAN_WAIT = 2.0  # seconds the killed writer's workers get to die with it
WORKER_DIED = "the extraction worker died"
MISSED = ("after", "no-worker")  # kills that found nothing to interrupt
BASES = {"add": "partial", "add_bytes": "partial", "remove": "full", "compact": "compact"}


# -- processes -------------------------------------------------------------------------------
class Child:
    """A child process whose output lines are collected as they come."""

    def __init__(self, cmd: list[str]) -> None:
        self.start = time.monotonic()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.out: list[str] = []
        self.err: list[str] = []
        self.ready, self.done = threading.Event(), threading.Event()
        self.ready_at = self.start
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
        return rc

    def said(self, prefix: str) -> list[str]:
        return [line[len(prefix) :] for line in self.out if line.startswith(prefix)]


def build_cmd(folder: Path, ix: Path, workers: int, checkpoint: int = CHECKPOINT) -> list[str]:
    exe = Path(sys.executable).with_name("imgsearch")
    cli = [str(exe)] if exe.exists() else [sys.executable, "-c", "from imgsearch.cli import main; main()"]
    return [*cli, "build", str(folder), "--index", str(ix), "--workers", str(workers),
            "--checkpoint", str(checkpoint), "--timeout", "60", "--quiet"]  # fmt: skip


def child_cmd(kind: str, ix: Path, workers: int, items: list[str]) -> list[str]:
    return [sys.executable, __file__, "--child", kind, str(ix), str(workers), *items]


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


def lock_holders(ix: Path) -> set[int]:
    """Pids holding a POSIX lock on ``ix/LOCK`` (from /proc/locks)."""
    try:
        st = os.stat(ix / "LOCK")
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


# -- the index as a set of paths -------------------------------------------------------------
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
    extra = [p.name for p in ix.iterdir() if p.name not in ("manifest.json", "LOCK", "segments")]
    return extra + [f"segments/{p.name}" for p in (ix / "segments").iterdir() if p.name not in keep]


def upload_key(path: str) -> str:
    return f"upload:{Path(path).name}"


# -- one trial -------------------------------------------------------------------------------
def run_trial(number: int, kind: str, fraction: float, rng: random.Random, env: dict) -> dict:
    """One trial of ``kind``, killed ``fraction`` of the way through the operation's duration."""
    started = time.monotonic()
    ix = env["work"] / f"t{number:03d}" / "ix"
    ix.parent.mkdir()
    if kind in BASES:
        shutil.copytree(env["bases"][BASES[kind]], ix)
    base = env["live"].get(BASES.get(kind, ""), set())
    files, small = env["files"], env["files"][-env["small"] :]
    items = {"add": small, "add_bytes": small, "remove": rng.sample(sorted(base), REMOVED) if base else []}
    watcher = Watcher(ix)
    watcher.start()
    row: dict = {"trial": number, "kind": kind, "failures": {}}
    fail = row["failures"]
    if kind in ("build", "worker"):
        child = Child(build_cmd(env["folder"], ix, env["workers"]))
        t0 = child.start
        if kind == "worker":  # from the moment its workers are there, for as long as they were last time
            while not children(child.proc.pid) and child.proc.poll() is None:
                time.sleep(0.002)
            t0 = time.monotonic()
    else:
        child = Child(child_cmd(kind, ix, env["workers"], items.get(kind, [])))
        if not child.ready.wait(60):
            fail["errors"] = "the child never became ready: " + " | ".join(child.err[-3:])
        t0 = child.ready_at
    row["delay"] = round(fraction * duration(env, kind), 4)
    time.sleep(max(0.0, t0 + row["delay"] - time.monotonic()))
    failed_files: set[str] = set()
    duplicates: set[str] = set()
    if kind == "worker":
        victims = children(child.proc.pid)
        row["phase"] = "extraction" if victims else "no-worker"
        if victims:
            os.kill(rng.choice(victims), signal.SIGKILL)
        # Its build runs to the end: its times are the next build and worker trials' durations.
        seconds, _, last, rc = watch_build(child, max(120.0, 20 * duration(env, "build")))
        env["durations"]["build"].append(seconds)
        if victims and last:  # how long its workers lived: the next worker trial's duration
            env["durations"]["worker"].append(last - (t0 - child.start))
        failed = [line.split(": ", 2)[1:] for line in child.err if line.startswith("failed: ")]
        failed_files = {p for p, _ in failed}
        duplicates = {line.split(": ", 2)[1] for line in child.err if line.startswith("duplicate: ")}
        # The dead worker's files (at most the IN_FLIGHT=2 it held) fail; nothing else does.
        if rc not in (0, 1) or any(WORKER_DIED not in r for _, r in failed) or len(failed) > 2:
            fail["errors"] = f"build exit {rc}, failed {failed}: {' | '.join(child.err[-3:])}"
        row["worker_failed"] = len(failed)
        workers: list[int] = []
    else:
        row["late"] = round(time.monotonic() - t0 - row["delay"], 4)  # the sleep's overshoot
        row["phase"], workers = stop_and_kill(child, ix, kind)
        if child.said("done "):
            row["op_seconds"] = float(child.said("done ")[0])
        if child.proc.returncode not in (0, -signal.SIGKILL):
            fail["errors"] = f"exit {child.proc.returncode}: " + " | ".join(child.err[-3:])
    if any("Traceback" in line for line in child.err):
        fail["errors"] = "a traceback: " + " | ".join(child.err[-5:])
    seen = watcher.stop()

    # The victim's workers die with it, and nothing holds the lock.
    deadline = time.monotonic() + ORPHAN_WAIT
    while (
        left := [p for p in set(workers) | set(processes_of(ix)) if alive(p)]
    ) and time.monotonic() < deadline:
        time.sleep(0.02)
    if left:
        fail["orphans"] = len(left)
    if (ix / "LOCK").exists():
        from imgsearch.errors import IndexLockedError
        from imgsearch.store.lock import WriterLock

        try:
            with WriterLock(ix, timeout=0):
                pass
        except IndexLockedError as exc:
            fail["stale_lock"] = str(exc)
    for pid in left:  # ours to clean up (descendants of the child we started)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)

    # What was acknowledged is there; what was removed stays removed; nothing half written.
    acked = set(child.said("ack "))
    must, gone = set(), set()
    allowed = set(files) if kind in ("build", "worker", "add") else set(base)
    if kind == "add_bytes":
        allowed |= {upload_key(p) for p in small}
    try:
        cache: dict = {}
        views = [manifest_paths(ix, entries, cache) for _, entries in sorted(seen.items())]
        if kind == "remove":
            must, gone = base - set(items["remove"]), acked | {p for v in views for p in base - v}
        elif kind == "compact":
            must, gone = base, env["removed"]
        elif kind == "worker":
            must = set(files) - failed_files - duplicates
            gone = failed_files
        else:
            must = base | acked | set().union(*views)
        exists = (ix / "manifest.json").exists()  # a build killed before it created the index: none
        stored, problems = live_digests(ix) if exists else ({}, [])
        if problems:
            fail["corrupt"] = problems
        if exists and seen and max(seen) > json.loads((ix / "manifest.json").read_text())["generation"]:
            fail["corrupt"] = "the manifest went back to an older generation"
        wrong = [p for p, d in stored.items() if p not in allowed or env["digests"][p] != d]
        if wrong:
            fail["corrupt"] = f"{len(wrong)} images not as the operation was given them: {sorted(wrong)[:3]}"
        if must - stored.keys():
            fail["lost"] = sorted(must - stored.keys())
        if gone & stored.keys():
            fail["undone"] = sorted(gone & stored.keys())
        row["live_after_kill"] = len(stored)
    except Exception as exc:  # the index cannot be opened or read
        fail["corrupt"] = f"{type(exc).__name__}: {exc}"

    # The next build finishes the job and cleans up.
    nxt = Child(build_cmd(env["folder"], ix, env["workers"]))
    rc = nxt.finish(max(120.0, 20 * duration(env, "build")))
    row["next_build_exit"] = rc
    failed = [line.split(": ", 2)[1] for line in nxt.err if line.startswith("failed: ")]
    if rc not in (0, 1) or any("Traceback" in x for x in nxt.err) or set(failed) - env["unreadable"]:
        fail["next_build"] = f"exit {rc}: " + " | ".join(nxt.err[-3:])
    else:
        try:
            stored, problems = live_digests(ix)
            if problems or len(stored) != env["expected"] or set(stored.values()) != env["unique"]:
                fail["next_build"] = f"{len(stored)} images (expected {env['expected']}); {problems[:2]}"
            if extra := leftovers(ix):
                fail["leftovers"] = extra
        except Exception as exc:
            fail["next_build"] = f"{type(exc).__name__}: {exc}"
    row["seconds"] = round(time.monotonic() - started, 2)
    if not fail:
        shutil.rmtree(ix.parent)
    return row


# -- preparation -----------------------------------------------------------------------------
def link_folder(folder: Path, files: list[str]) -> Path:
    """A folder of symbolic links to ``files`` (the index stores their resolved paths)."""
    folder.mkdir()
    for i, f in enumerate(files):
        (folder / f"{i:04d}{Path(f).suffix}").symlink_to(f)
    return folder


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


def cli_build(folder: Path, ix: Path, workers: int, checkpoint: int = CHECKPOINT) -> tuple[float, float, set]:
    """Build an index; returns (seconds, seconds its workers lived, the files that failed)."""
    child = Child(build_cmd(folder, ix, workers, checkpoint))
    seconds, first, last, rc = watch_build(child)
    if rc not in (0, 1):
        raise SystemExit(f"building {ix} failed:\n" + "\n".join(child.err[-10:]))
    return (
        seconds,
        last - first,
        {line.split(": ", 2)[1] for line in child.err if line.startswith("failed: ")},
    )


def prepare(args: argparse.Namespace, work: Path) -> dict:
    from imgsearch import Index, hashing
    from imgsearch.index import collect_paths

    files = collect_paths([args.photos])[0][: args.limit]
    if len(files) < 20:
        raise SystemExit(f"{args.photos}: {len(files)} images; faults.py needs at least 20")
    small = max(8, min(SMALL, len(files) // 3))  # 8 or more: Index.add starts its worker pool
    folder = link_folder(work / "photos", files)
    bases = {name: work / f"base-{name}" for name in ("partial", "full", "compact")}
    cli_build(link_folder(work / "partial-photos", files[:-small]), bases["partial"], args.workers)
    seconds, worker_seconds, unreadable = cli_build(folder, bases["full"], args.workers)
    shutil.copytree(bases["partial"], bases["compact"])
    cli_build(folder, bases["compact"], args.workers, checkpoint=3)  # small segments to merge
    with Index.open(bases["compact"]) as index:
        removed = set(index.remove(files[:: max(1, len(files) // 3)][:3]))
    live = {}
    for name, path in bases.items():
        with Index.open(path) as index:
            live[name] = set(index.paths)
    digests = {f: hashing.file_digest(Path(f).read_bytes()).tobytes() for f in files}
    digests |= {upload_key(f): digests[f] for f in files[-small:]}
    env = {
        "work": work, "files": files, "small": small, "folder": folder, "bases": bases, "live": live,
        "removed": removed, "digests": digests, "unreadable": unreadable, "workers": args.workers,
        "expected": len(live["full"]), "unique": {digests[f] for f in live["full"]},
        "durations": {"build": [seconds], "worker": [worker_seconds]},
    }  # fmt: skip
    calibrate(env)
    return env


def duration(env: dict, kind: str) -> float:
    """The operation's expected seconds: the median of its last 3 measurements (the machine's load
    moves it by 2-3x within minutes)."""
    return statistics.median(env["durations"][kind][-3:])


def calibrate(env: dict) -> None:
    """Run each Python-side operation once to the end: its duration, from "ready" to "done"."""
    small = env["files"][-env["small"] :]
    for kind, base in BASES.items():
        ix = env["work"] / f"calibrate-{kind}"
        shutil.copytree(env["bases"][base], ix)
        items = {"add": small, "add_bytes": small, "remove": sorted(env["live"]["full"])[:REMOVED]}
        child = Child(child_cmd(kind, ix, env["workers"], items.get(kind, [])))
        if child.finish(300) != 0 or not child.said("done "):
            raise SystemExit(f"calibrating {kind} failed:\n" + "\n".join(child.err[-10:]))
        env["durations"].setdefault(kind, []).append(float(child.said("done ")[0]))
        shutil.rmtree(ix)


# -- the operations, in a child process ------------------------------------------------------
def child_main(kind: str, ix: str, items: list[str], workers: int) -> None:
    from imgsearch import Index

    def say(text: str) -> None:
        print(text, flush=True)

    index = Index.open(ix)
    say(f"ready {time.monotonic()}")
    start = time.perf_counter()
    if kind == "add":
        for path in index.add(items, workers=workers, checkpoint=3).added:
            say(f"ack {path}")
    elif kind == "add_bytes":
        for path in items:
            index.add_bytes(upload_key(path), Path(path).read_bytes())
            say(f"ack {upload_key(path)}")
    elif kind == "remove":
        for path in items:
            for removed in index.remove([path]):
                say(f"ack {removed}")
    elif kind == "compact":
        index.compact()
    say(f"done {time.perf_counter() - start:.4f}")


# -- report ----------------------------------------------------------------------------------
def summarise(rows: list[dict]) -> dict:
    out: dict = {}
    for kind in (*KINDS, "total"):
        mine = [r for r in rows if kind in (r["kind"], "total")]
        out[kind] = {
            "trials": sum(not r["missed"] for r in mine),
            "missed": sum(r["missed"] for r in mine),
            "phases": dict(Counter(r["phase"] for r in mine if not r["missed"]).most_common()),
        }
        out[kind] |= {f: sum(f in r["failures"] for r in mine) for f in FAILURES}
    return out


def print_table(summary: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="kill -9 trials: failures per check (0 everywhere is the target)")
    for col in ("kind", "trials", "missed", "kills by phase", *FAILURES):
        table.add_column(
            col.replace("_", " "), justify="left" if col.startswith(("kind", "kills")) else "right"
        )
    for kind, s in summary.items():
        phases = ", ".join(f"{p} {n}" for p, n in s["phases"].items())
        table.add_row(
            kind,
            str(s["trials"]),
            str(s["missed"]),
            phases,
            *(str(s[f]) for f in FAILURES),
            end_section=kind == KINDS[-1],
        )
    Console(width=200).print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("photos", nargs="?", default="/work/shared/data/photos", type=Path)
    parser.add_argument("--trials", type=int, default=60)
    parser.add_argument("--limit", type=int, default=200, help="photos used (the first, by path)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", type=Path)
    if sys.argv[1:2] == ["--child"]:  # internal: faults.py --child KIND INDEX WORKERS [FILE...]
        kind, ix, workers, *items = sys.argv[2:]
        return child_main(kind, ix, items, int(workers))
    args = parser.parse_args()
    start = time.monotonic()
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="imgsearch-faults-"))
    env = prepare(args, work)
    # Stratified moments: a uniform point in one of n equal slices each (uniform overall, and spread).
    kinds = [KINDS[n % len(KINDS)] for n in range(args.trials)]
    fractions: dict[str, list[float]] = {}
    for kind in KINDS:
        n = kinds.count(kind)
        fractions[kind] = [(k + rng.random()) / n for k in rng.sample(range(n), n)]
    # A kill that found the operation finished (or no worker alive) is checked like the others but
    # not counted as a trial: the trial is drawn again (at most trials/2 times), uniformly over the
    # whole duration, so that --trials kills land inside the operation.
    plan = [(kind, fractions[kind].pop()) for kind in kinds]
    rows: list[dict] = []
    while plan:
        kind, fraction = plan.pop(0)
        if rows and len(rows) % len(KINDS) == 0:  # the machine's load drifts: measure again
            calibrate(env)
        r = run_trial(len(rows), kind, fraction, rng, env)
        r["missed"] = r["phase"] in MISSED
        if r["missed"] and sum(x["missed"] for x in rows) < args.trials // 2:
            plan.insert(0, (kind, rng.random()))
        rows.append(r)
        print(f"{r['trial']:3d} {r['kind']:9s} {r['phase']:16s} {r['seconds']:5.1f} s "
              f"{'ok' if not r['failures'] else r['failures']}", flush=True)  # fmt: skip
    summary = summarise(rows)
    print_table(summary)
    seconds = time.monotonic() - start
    failed = any(r["failures"] for r in rows)
    print(f"{len(env['files'])} photos, {summary['total']['trials']} trials (and {summary['total']['missed']} "
          f"kills that missed), {seconds:.0f} s; "
          + (f"failed trials kept in {work}" if failed else "no failure"))  # fmt: skip
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "command": sys.argv, "photos": len(env["files"]), "seed": args.seed, "workers": args.workers,
            "seconds": round(seconds, 1), "durations": env["durations"], "summary": summary, "trials": rows,
        }, indent=1))  # fmt: skip
    if not failed:
        shutil.rmtree(work)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
