"""Cost per keypoint patch of the local tier's batched stages, beside a per-patch peer.

The issue's budget is about 10 µs a patch for cutting and hashing it. For the keypoints of
``--limit`` photos (J=400, detected at 210 px, the index's defaults) this times, on one core and
over whole images at a time (the way extraction runs them):

* ``cut``: :func:`imgsearch.patches.extract_patches`, rotation-normalised 32 x 32 patches at
  scale 1 (one stacked ``cv2.remap`` per chunk);
* ``hash``: :func:`imgsearch.hashing.patch_hashes`, the 64-bit pHash of every patch (one matrix
  DCT for the batch);
* ``describe``: :func:`imgsearch.descriptors.patch_descriptors`, the SIFT-layout histograms;
* and, as the peer measured in the same run, ``imagehash.phash`` of each patch one by one (a PIL
  image per patch, its own DCT), the obvious per-patch loop.

Prints µs a patch per stage (best of ``--repeat``) and the peer's time over ours.

    .venv/bin/python scripts/bench_patches.py --json scripts/results/patches.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import workload
from rich.console import Console
from rich.table import Table


def _best(fn, repeat: int) -> float:
    """Best wall time of ``fn()`` over ``repeat`` runs, in seconds."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", nargs="?", type=Path, default=workload.DEFAULT_PHOTOS)
    parser.add_argument("--limit", type=int, default=100, help="photos to take keypoints from")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--peer-limit", type=int, default=10, help="photos the per-patch peer runs on")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core, like the targets

    from imgsearch import KeypointConfig, io
    from imgsearch import keypoints as kp_mod
    from imgsearch.descriptors import patch_descriptors
    from imgsearch.hashing import patch_hashes
    from imgsearch.patches import extract_patches

    config = KeypointConfig()
    images = []  # (downscaled gray, keypoints) per photo
    for path in workload.list_images(args.folder, args.limit):
        small, _ = kp_mod.downscale(io.read_image(path, gray=True), config.max_side)
        images.append((small, kp_mod.make_detector(config).detect_and_describe(small, config.budget, False)))
    n = sum(len(k) for _, k in images)
    patches = [extract_patches(s, k, (1.0,)) for s, k in images]

    stages = {
        "cut": lambda: [extract_patches(s, k, (1.0,)) for s, k in images],
        "hash": lambda: [patch_hashes(p) for p in patches],
        "describe": lambda: [patch_descriptors(p) for p in patches],
    }
    us = {name: _best(fn, args.repeat) / n * 1e6 for name, fn in stages.items()}

    peer_us = None
    try:
        import imagehash
        from PIL import Image
    except ImportError as exc:
        print(f"peer skipped: {exc}", file=sys.stderr)
    else:
        few = [np.clip(p, 0, 255).astype(np.uint8) for p in patches[: args.peer_limit]]
        m = sum(len(p) for p in few)
        peer = _best(lambda: [imagehash.phash(Image.fromarray(x)) for p in few for x in p], args.repeat)
        peer_us = peer / m * 1e6

    table = Table(title=f"patch stages: {n} patches of {len(images)} photos (J={config.budget}), one core")
    for col in ("stage", "µs a patch", "imagehash.phash per patch ÷ this"):
        table.add_column(col, justify="right")
    for name, value in us.items():
        ratio = f"{peer_us / value:.1f}x" if peer_us and name == "hash" else ""
        table.add_row(name, f"{value:.2f}", ratio)
    table.add_row("cut + hash", f"{us['cut'] + us['hash']:.2f}", "")
    table.add_row("cut + hash + describe", f"{sum(us.values()):.2f}", "")
    if peer_us is not None:
        table.add_row("imagehash.phash (peer)", f"{peer_us:.2f}", "1.0x")
    Console(width=120).print(table)
    print(f"budget ≈10 µs a patch to cut and hash: {us['cut'] + us['hash']:.2f}")
    if args.json:
        args.json.write_text(
            json.dumps({"patches": n, "photos": len(images), "us": us, "peer_us": peer_us}, indent=1)
        )
        print(f"saved {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
