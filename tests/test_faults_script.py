"""scripts/faults.py and observe.py: a smoke run (one kill of each kind on the fixture photos, no
failure), the checks shown to see what they look for (a stray file, a held lock, a process of the
index, a write in progress), and a fault found with them (xfail until fixed)."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from imgsearch import Index, IndexConfig

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "faults.py"
DATA = ROOT / "tests" / "data"


@pytest.fixture
def scripts(monkeypatch: pytest.MonkeyPatch):
    """The modules ``faults`` and ``observe`` of scripts/, imported as the script imports them."""
    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    return importlib.import_module("faults"), importlib.import_module("observe")


def test_faults_smoke(tmp_path: Path, scripts) -> None:
    faults, _ = scripts
    out = tmp_path / "faults.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), str(DATA), "--trials", "6", "--seed", "1", "--json", str(out)],
        capture_output=True, text=True, cwd=ROOT, timeout=240, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, f"faults.py exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert "kill -9 trials" in proc.stdout and "no failure" in proc.stdout
    result = json.loads(out.read_text())
    assert result["photos"] == 24
    assert sorted(t["kind"] for t in result["trials"] if not t["missed"]) == sorted(faults.KINDS)
    assert result["summary"]["total"]["trials"] == 6
    assert all(not t["failures"] and t["next_build_exit"] == 0 for t in result["trials"])
    assert all(result["summary"]["total"][check] == 0 for check in faults.FAILURES)


HOLDER = """
import sys, time
from imgsearch.store.lock import WriterLock
lock = WriterLock(sys.argv[1], timeout=0)
lock.acquire()
tmp = open(sys.argv[1] + "/segments/seg-000001.seg.tmp-1", "wb")
print("held", flush=True)
time.sleep(60)
"""


def test_checks_see_leftovers_locks_processes_and_writes(tmp_path: Path, scripts) -> None:
    _, observe = scripts
    ix = tmp_path / "ix"
    Index.create(ix, IndexConfig(keypoints=None)).close()
    assert observe.leftovers(ix) == []
    (ix / "segments" / "seg-000009.seg.tmp-123").write_bytes(b"crashed writer")
    assert observe.leftovers(ix) == ["segments/seg-000009.seg.tmp-123"]

    with subprocess.Popen([sys.executable, "-c", HOLDER, str(ix)], stdout=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
            assert observe.lock_holders(ix) == {proc.pid}
            assert observe.processes_of(ix) == [proc.pid]
            assert observe.phase_of(proc.pid, ix, "add", done=False) == "segment-write"
            assert observe.phase_of(proc.pid, ix, "compact", done=False) == "merge-write"
        finally:
            proc.kill()
    assert observe.lock_holders(ix) == set() and observe.processes_of(ix) == []


def _answer_one_then_leave(conn, config, parent) -> None:
    """An extraction worker that stops reading its pipe, answers one file and exits a moment later:
    a worker killed just after it answered, before the pool sees it dead (deterministically: the
    pool writes to a socket whose reading side is shut)."""
    import socket

    from imgsearch import extract

    extract._init_worker(parent)
    number, path = conn.recv()
    socket.socket(fileno=os.dup(conn.fileno())).shutdown(socket.SHUT_RD)
    conn.send((number, extract._extract_or_error((path, config))))
    time.sleep(0.3)


def test_a_worker_leaving_as_it_is_fed_costs_its_files_not_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    from imgsearch import extract

    monkeypatch.setattr(extract, "_worker", _answer_one_then_leave)
    paths = [str(p) for p in sorted(DATA.glob("*.jpg"))[:8]]  # 8: the pool starts
    results = list(extract.extract_files(paths, IndexConfig(keypoints=None), workers=2))
    assert len(results) == len(paths)
    failed = [r for r in results if isinstance(r, extract.ImageReadError)]
    assert failed and all("worker died" in r.reason for r in failed)
