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
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from observe import (
    Child,
    Watcher,
    alive,
    children,
    leftovers,
    live_digests,
    manifest_paths,
    processes_of,
    stop_and_kill,
    watch_build,
)

KINDS = ("build", "add", "remove", "compact", "add_bytes", "worker")
FAILURES = ("corrupt", "lost", "undone", "stale_lock", "orphans", "next_build", "leftovers", "errors")
CHECKPOINT = 20  # images a killed build commits at a time
SMALL = 10  # files an add or add_bytes trial writes
REMOVED = 5  # images a remove trial removes
ORPHAN_WAIT = 2.0  # seconds the killed writer's workers get to die with it
WORKER_DIED = "the extraction worker died"
MISSED = ("after", "no-worker")  # kills that found nothing to interrupt
BASES = {"add": "partial", "add_bytes": "partial", "remove": "full", "compact": "compact"}


def build_cmd(folder: Path, ix: Path, workers: int, checkpoint: int = CHECKPOINT) -> list[str]:
    exe = Path(sys.executable).with_name("imgsearch")
    cli = [str(exe)] if exe.exists() else [sys.executable, "-c", "from imgsearch.cli import main; main()"]
    return [*cli, "build", str(folder), "--index", str(ix), "--workers", str(workers),
            "--checkpoint", str(checkpoint), "--timeout", "60", "--quiet"]  # fmt: skip


def child_cmd(kind: str, ix: Path, workers: int, items: list[str]) -> list[str]:
    return [sys.executable, __file__, "--child", kind, str(ix), str(workers), *items]


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
    small = env["files"][-env["small"] :]
    items = {"add": small, "add_bytes": small, "remove": rng.sample(sorted(base), REMOVED) if base else []}
    row: dict = {"trial": number, "kind": kind, "failures": {}}
    watcher = Watcher(ix)
    watcher.start()
    child, workers = interrupt(kind, ix, items.get(kind, []), fraction, rng, env, row)
    seen = watcher.stop()
    check_processes(ix, workers, row["failures"])
    check_contents(kind, ix, base, items, child, seen, env, row)
    check_next_build(ix, env, row)
    row["seconds"] = round(time.monotonic() - started, 2)
    if not row["failures"]:
        shutil.rmtree(ix.parent)
    return row


def interrupt(
    kind: str, ix: Path, items: list[str], fraction: float, rng: random.Random, env: dict, row: dict
) -> tuple[Child, list[int]]:
    """Start the operation and kill it (or, for ``worker``, one of its workers and let it finish);
    returns the child and the workers the victim had when it was killed."""
    fail = row["failures"]
    if kind in ("build", "worker"):
        child = Child(build_cmd(env["folder"], ix, env["workers"]))
        t0 = child.start
        if kind == "worker":  # from the moment its workers are there, for as long as they were last time
            while not children(child.proc.pid) and child.proc.poll() is None:
                time.sleep(0.002)
            t0 = time.monotonic()
    else:
        child = Child(child_cmd(kind, ix, env["workers"], items))
        if not child.ready.wait(60):
            fail["errors"] = "the child never became ready: " + " | ".join(child.err[-3:])
        t0 = child.ready_at
    row["delay"] = round(fraction * duration(env, kind), 4)
    target, last_seen = t0 + row["delay"], t0
    while (now := time.monotonic()) < target:
        if kind == "worker" and children(child.proc.pid):  # how long they live, should this miss
            last_seen = now
        time.sleep(min(0.02, target - now) if kind == "worker" else target - now)
    row["late"] = round(time.monotonic() - target, 4)  # the sleep's overshoot
    workers: list[int] = []
    if kind == "worker":
        victims = children(child.proc.pid)
        row["phase"] = "extraction" if victims else "no-worker"
        if victims:
            os.kill(rng.choice(victims), signal.SIGKILL)
        # Its build runs to the end: its times are the next build and worker trials' durations.
        seconds, _, last, rc = watch_build(child, max(120.0, 20 * duration(env, "build")))
        env["durations"]["build"].append(seconds)
        env["durations"]["worker"].append((last - (t0 - child.start)) if victims and last else last_seen - t0)
        failed = [line.split(": ", 2)[1:] for line in child.err if line.startswith("failed: ")]
        # The dead worker's files (at most the IN_FLIGHT=2 it held) fail; nothing else does.
        if rc not in (0, 1) or any(WORKER_DIED not in r for _, r in failed) or len(failed) > 2:
            fail["errors"] = f"build exit {rc}, failed {failed}: {' | '.join(child.err[-3:])}"
        row["worker_failed"] = len(failed)
    else:
        row["phase"], workers = stop_and_kill(child, ix, kind)
        if row["phase"] == "after" and child.done.is_set():  # quicker than expected: a measurement
            op = float(child.said("done ")[0]) if child.said("done ") else child.done_at - child.start
            row["op_seconds"] = round(op, 4)
            env["durations"][kind].append(op)
        if child.proc.returncode not in (0, -signal.SIGKILL):
            fail["errors"] = f"exit {child.proc.returncode}: " + " | ".join(child.err[-3:])
    if any("Traceback" in line for line in child.err):
        fail["errors"] = "a traceback: " + " | ".join(child.err[-5:])
    return child, workers


def check_processes(ix: Path, workers: list[int], fail: dict) -> None:
    """The victim's workers die with it, and nothing holds the lock."""
    from imgsearch.errors import IndexLockedError
    from imgsearch.store.lock import WriterLock

    deadline = time.monotonic() + ORPHAN_WAIT
    while (left := [p for p in {*workers, *processes_of(ix)} if alive(p)]) and time.monotonic() < deadline:
        time.sleep(0.02)
    if left:
        fail["orphans"] = len(left)
    for name in ("LOCK", "MERGE"):  # the writer's lock and the merger's
        if (ix / name).exists():
            try:
                with WriterLock(ix, timeout=0, name=name):
                    pass
            except IndexLockedError as exc:
                fail["stale_lock"] = str(exc)
    for pid in left:  # ours to clean up: descendants of the child we started
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def check_contents(
    kind: str, ix: Path, base: set[str], items: dict, child: Child, seen: dict, env: dict, row: dict
) -> None:
    """What was acknowledged is there, what was removed stays removed, nothing is half written."""
    fail, files = row["failures"], set(env["files"])
    acked = set(child.said("ack "))
    allowed = files if kind in ("build", "worker", "add") else set(base)
    if kind == "add_bytes":
        allowed |= {upload_key(p) for p in items["add_bytes"]}
    try:
        cache: dict = {}
        views = [manifest_paths(ix, entries, cache) for _, entries in sorted(seen.items())]
        gone: set[str] = set()
        if kind == "remove":
            must, gone = base - set(items["remove"]), acked | {p for v in views for p in base - v}
        elif kind == "compact":
            must, gone = base, env["removed"]
        elif kind == "worker":
            failed = {line.split(": ", 2)[1] for line in child.err if line.startswith("failed: ")}
            duplicates = {line.split(": ", 2)[1] for line in child.err if line.startswith("duplicate: ")}
            must, gone = files - failed - duplicates, failed
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


def check_next_build(ix: Path, env: dict, row: dict) -> None:
    """The next build finishes the job, every photo once, and cleans up after the crashed writer."""
    fail = row["failures"]
    nxt = Child(build_cmd(env["folder"], ix, env["workers"]))
    rc = row["next_build_exit"] = nxt.finish(max(120.0, 20 * duration(env, "build")))
    failed = [line.split(": ", 2)[1] for line in nxt.err if line.startswith("failed: ")]
    if rc not in (0, 1) or any("Traceback" in x for x in nxt.err) or set(failed) - env["unreadable"]:
        fail["next_build"] = f"exit {rc}: " + " | ".join(nxt.err[-3:])
        return
    try:
        stored, problems = live_digests(ix)
        if problems or len(stored) != env["expected"] or set(stored.values()) != env["unique"]:
            fail["next_build"] = f"{len(stored)} images (expected {env['expected']}); {problems[:2]}"
        if extra := leftovers(ix):
            fail["leftovers"] = extra
    except Exception as exc:
        fail["next_build"] = f"{type(exc).__name__}: {exc}"


# -- preparation -----------------------------------------------------------------------------
def link_folder(folder: Path, files: list[str]) -> Path:
    """A folder of symbolic links to ``files`` (the index stores their resolved paths)."""
    folder.mkdir()
    for i, f in enumerate(files):
        (folder / f"{i:04d}{Path(f).suffix}").symlink_to(f)
    return folder


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
    # not counted as a trial: the trial is drawn again (at most max(trials/2, 12) times), uniformly over the
    # whole duration, so that --trials kills land inside the operation.
    plan = [(kind, fractions[kind].pop()) for kind in kinds]
    rows: list[dict] = []
    while plan:
        kind, fraction = plan.pop(0)
        if rows and len(rows) % len(KINDS) == 0:  # the machine's load drifts: measure again
            calibrate(env)
        r = run_trial(len(rows), kind, fraction, rng, env)
        r["missed"] = r["phase"] in MISSED
        if r["missed"] and sum(x["missed"] for x in rows) < max(args.trials // 2, 2 * len(KINDS)):
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
