"""Merge chosen segments of a kept index, one group after another, reporting time and layout.

Research script (issue 12): what the number of large segments costs a query at a million images
(run ``passes_at_scale.py`` between merges). Each group (``seg-A.seg+seg-B.seg``) is merged by
``IndexWriter.merge`` after waiting out the grace of the previous merge's sources, so that the
writer removes them first (a merge needs the disk of its output). Watch the process's ``RssAnon``
(``/proc/PID/status``) for its memory: the merge's arrays, not the mapped segments.

    .venv/bin/python scripts/research/merge_kept.py /tmp/s1m/bench-scale-*/index \\
        seg-000048.seg+seg-000049.seg seg-000050.seg+seg-000051.seg
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from imgsearch.store import manifest as mf
from imgsearch.store.writer import IndexWriter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("index", type=Path, help="the index folder")
    parser.add_argument("groups", nargs="+", help="segment names joined by +, one merge each")
    args = parser.parse_args()
    with IndexWriter(args.index) as writer:
        writer.commit(None, {})  # drops segments whose every image was removed
        print("segments", [(e.name, e.live) for e in writer.manifest.segments], flush=True)
    for group in args.groups:
        time.sleep(mf.GRACE_SECONDS + 5)  # the last merge's sources retired long enough to be removed
        t = time.time()
        with IndexWriter(args.index) as writer:  # opening it removes them
            manifest = writer.merge(group.split("+"))
        print(f"merged {group} in {time.time() - t:.0f} s:", [(e.name, e.live) for e in manifest.segments],
              f"{shutil.disk_usage(args.index).free / 1e9:.1f} GB free", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
