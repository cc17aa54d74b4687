"""Hit rate and false positives on transforms harsher than, or absent from, the evaluation set.

The defaults were chosen on ``imgsearch eval``'s 31 transforms; this asks how they hold on what was
never tuned for: crops to 10-15 % of the area, JPEG quality 5-10, strong blur and noise, tiny
copies, strong perspective and stretch, a photo pasted into another photo, two photos side by side,
a negative, sepia, half the image under text, a cartoon filter, wide borders, and stacked
combinations. The first ``--indexed`` photos are indexed; per transform, ``--per-transform`` of
them are modified and queried (a hit: the original ranked first and judged a copy), and as many
never-indexed photos get the same transform (any match is a false positive; for ``paste`` and
``side_by_side`` the second photo is never indexed either). Every query is a JPEG of quality 95
(``protocol.encode_query``) unless the transform says otherwise.

    .venv/bin/python scripts/stress_transforms.py --k 40,400 --out scripts/results/stress.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import workload
from rich.console import Console
from rich.table import Table

from imgsearch import io
from imgsearch.evaluate import transforms as T
from imgsearch.evaluate.overlays import text_overlay

Image = np.ndarray  # (H, W, 3) uint8 RGB
Rng = np.random.Generator


def _text(image: Image, rng: Rng, share: float) -> Image:
    return text_overlay(image, rng, share, share)


def _cartoon(image: Image) -> Image:
    smooth = cv2.bilateralFilter(np.ascontiguousarray(image), 9, 75, 75)
    return (np.minimum(smooth // 48, 4) * 48 + 24).astype(np.uint8)  # 6 levels, 24-216, no wrap


def _sepia(image: Image) -> Image:
    m = np.array([[0.393, 0.769, 0.189], [0.349, 0.686, 0.168], [0.272, 0.534, 0.131]], np.float32)
    return np.clip(image.astype(np.float32) @ m.T, 0, 255).astype(np.uint8)


def _border(image: Image, rng: Rng) -> Image:
    h, w = image.shape[:2]
    pad = int(0.4 * max(h, w))
    colour = [int(c) for c in rng.integers(0, 256, 3)]
    return cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=colour)


def _paste(image: Image, rng: Rng, background: Image) -> Image:
    """``image`` shrunk so its long side is 30-45 % of the background's width, pasted at a random
    place on it."""
    bg = background.copy()
    bh, bw = bg.shape[:2]
    small = io.resize_long_side(image, int(rng.uniform(0.30, 0.45) * bw))
    sh, sw = small.shape[:2]
    sh, sw = min(sh, bh), min(sw, bw)
    y, x = rng.integers(0, bh - sh + 1), rng.integers(0, bw - sw + 1)
    bg[y : y + sh, x : x + sw] = small[:sh, :sw]
    return bg


def _side_by_side(image: Image, other: Image) -> Image:
    h = min(image.shape[0], other.shape[0])
    a = cv2.resize(image, (round(image.shape[1] * h / image.shape[0]), h), interpolation=cv2.INTER_AREA)
    b = cv2.resize(other, (round(other.shape[1] * h / other.shape[0]), h), interpolation=cv2.INTER_AREA)
    return np.concatenate([a, b], axis=1)


def _combo(image: Image, rng: Rng) -> Image:
    out = T.crop(np.ascontiguousarray(image[:, ::-1]), rng, 0.35, 0.35)
    out = T.rotate(out, float(rng.uniform(20, 40) * rng.choice([-1, 1])), fill=(0, 0, 0))
    hsv = cv2.cvtColor(np.ascontiguousarray(out), cv2.COLOR_RGB2HSV)
    hsv[..., 0] = (hsv[..., 0].astype(np.int32) + 30) % 180
    out = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    return T.jpeg(out, rng, 30, 30)


def _gray_crop_mirror(image: Image, rng: Rng) -> Image:
    return T.apply_transform("grayscale", np.ascontiguousarray(T.crop(image, rng, 0.25, 0.25)[:, ::-1]), 0)


# name -> (description, fn(image, rng, other)); ``other`` is a never-indexed photo.
STRESS: dict[str, tuple[str, Callable[[Image, Rng, Image], Image]]] = {
    "crop_15": ("crop keeping 15 % of the area", lambda im, r, o: T.crop(im, r, 0.15, 0.15)),
    "crop_10": ("crop keeping 10 % of the area", lambda im, r, o: T.crop(im, r, 0.10, 0.10)),
    "jpeg_5": ("JPEG quality 5-10", lambda im, r, o: T.jpeg(im, r, 5, 10)),
    "blur_4": ("Gaussian blur, sigma 3-4 px", lambda im, r, o: cv2.GaussianBlur(im, (0, 0), r.uniform(3, 4))),
    "noise_30": (
        "Gaussian noise, sigma 25-35",
        lambda im, r, o: np.clip(im + r.normal(0, r.uniform(25, 35), im.shape), 0, 255).astype(np.uint8),
    ),
    "tiny": (
        "downscaled to 80-120 px on the long side",
        lambda im, r, o: io.resize_long_side(im, int(r.integers(80, 121))),
    ),
    "perspective_18": (
        "corners moved by up to 18 % of the side",
        lambda im, r, o: T.perspective(im, r, 0.18),
    ),
    "stretch_2x": (
        "one axis stretched 1.7-2.0x",
        lambda im, r, o: cv2.resize(im, (round(im.shape[1] * r.uniform(1.7, 2.0)), im.shape[0])),
    ),
    "rotate_45_crop": (
        "crop 35 % then rotation by 30-60°",
        lambda im, r, o: T.rotate(T.crop(im, r, 0.35, 0.35), float(r.uniform(30, 60)), fill=(0, 0, 0)),
    ),
    "paste": (
        "long side shrunk to 30-45 % of another photo's width, pasted on it",
        lambda im, r, o: _paste(im, r, o),
    ),
    "side_by_side": ("next to another photo of the same height", lambda im, r, o: _side_by_side(im, o)),
    "negative": ("colours inverted", lambda im, r, o: 255 - im),
    "sepia": ("sepia tone", lambda im, r, o: _sepia(im)),
    "text_45": ("text block over 40-50 % of the area", lambda im, r, o: _text(im, r, 0.45)),
    "cartoon": ("bilateral filter and 6 grey levels a channel", lambda im, r, o: _cartoon(im)),
    "border_40": ("solid border of 40 % of the long side on each side", lambda im, r, o: _border(im, r)),
    "combo_hard": ("mirror, crop 35 %, rotation 20-40°, hue +60°, JPEG 30", lambda im, r, o: _combo(im, r)),
    "gray_crop_mirror": ("crop 25 %, mirror, grayscale", lambda im, r, o: _gray_crop_mirror(im, r)),
}


def run_queries(
    index, queries: list[tuple[str, str | None, bytes]], ks: list[int], overrides: dict
) -> list[dict]:
    """Per K and transform: hit@1 over the copies, wrong first matches, false positives."""
    rows: list[dict] = []
    for k in ks:
        t0 = time.perf_counter()
        results = index.query_many([q[2] for q in queries], keypoints=k, top=3, **overrides)
        per_query_ms = (time.perf_counter() - t0) / len(queries) * 1e3
        for name, (desc, _) in STRESS.items():
            hits = copies_n = fps = distr_n = wrong = 0
            for (qname, expected, _), res in zip(queries, results, strict=True):
                if qname != name:
                    continue
                top = res.matches[0].path if res.matches else None
                if expected is None:
                    distr_n += 1
                    fps += top is not None
                else:
                    copies_n += 1
                    hits += top == expected
                    wrong += top is not None and top != expected
            rows.append(
                {
                    "k": k,
                    "transform": name,
                    "description": desc,
                    "copies": copies_n,
                    "hit_at_1": hits / copies_n,
                    "wrong_top": wrong,
                    "distractors": distr_n,
                    "false_positives": fps,
                }
            )
        print(f"K={k}: {per_query_ms:.1f} ms a query over {len(queries)} queries", file=sys.stderr)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", nargs="?", type=Path, default=workload.DEFAULT_PHOTOS)
    parser.add_argument("--indexed", type=int, default=800)
    parser.add_argument("--per-transform", type=int, default=40)
    parser.add_argument("--k", default="40,400", help="query keypoint budgets, comma-separated")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None, help="write the table as JSON here")
    workload.add_search_option(parser)
    args = parser.parse_args(argv)
    overrides = workload.search_overrides(parser, args, "keypoints")

    from imgsearch import Index, IndexConfig
    from imgsearch.evaluate.protocol import encode_query

    photos = workload.list_images(args.folder, None)
    indexed, others = photos[: args.indexed], photos[args.indexed :]
    if not others:
        raise SystemExit(f"error: need photos after the first {args.indexed} as distractors")
    rng = np.random.default_rng(args.seed)
    ks = [int(k) for k in args.k.split(",")]

    # Queries: (transform, expected path or None, bytes).
    queries: list[tuple[str, str | None, bytes]] = []
    for name, (_, fn) in STRESS.items():
        copies = rng.choice(len(indexed), args.per_transform, replace=False)
        distractors = rng.choice(len(others), min(args.per_transform, len(others)), replace=False)
        for i in copies:
            other = others[int(rng.integers(len(others)))]
            queries.append(
                (name, indexed[i], encode_query(fn(io.read_image(indexed[i]), rng, io.read_image(other))))
            )
        for i in distractors:
            other = others[int(rng.integers(len(others)))]
            queries.append(
                (name, None, encode_query(fn(io.read_image(others[i]), rng, io.read_image(other))))
            )

    with tempfile.TemporaryDirectory(prefix="stress-") as tmp:
        with Index.create(Path(tmp) / "index", IndexConfig()) as index:
            report = index.add(indexed, workers=args.workers)
            if not report.ok:
                raise SystemExit(f"error: {len(report.failed)} photos failed to index")
            rows = run_queries(index, queries, ks, overrides)

    console = Console(width=140) if not sys.stdout.isatty() else Console()
    table = Table(
        title=f"stress transforms: {len(indexed)} indexed, {args.per_transform} copies + "
        f"{args.per_transform} distractors per transform, seed {args.seed}"
        + "".join(f", {item}" for item in args.search)
    )
    table.add_column("transform")
    for k in ks:
        table.add_column(f"hit@1 K={k}", justify="right")
    table.add_column("wrong top", justify="right")
    table.add_column("false pos.", justify="right")
    table.add_column("what")
    for name, (desc, _) in STRESS.items():
        mine = [r for r in rows if r["transform"] == name]
        table.add_row(
            name,
            *[f"{r['hit_at_1']:.3f}" for r in mine],
            str(sum(r["wrong_top"] for r in mine)),
            str(sum(r["false_positives"] for r in mine)),
            desc,
        )
    console.print(table)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            json.dumps(
                {
                    "indexed": len(indexed),
                    "per_transform": args.per_transform,
                    "seed": args.seed,
                    "search": overrides,
                    "rows": rows,
                },
                indent=1,
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
