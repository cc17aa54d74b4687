"""Hit rate and false positives on transforms harsher than, or absent from, the evaluation set.

The defaults were chosen on ``imgsearch eval``'s 31 transforms; this asks how they hold on what was
never tuned for: crops to 10-15 % of the area, JPEG quality 5-10, strong blur and noise, tiny
copies, strong perspective and stretch, a photo pasted into another photo, two photos side by side,
a negative, sepia, half the image under text, a cartoon filter, wide borders, and stacked
combinations; and, in the style of the Image Similarity Challenge 2021 and AugLy, a meme caption
band, stripes, pixelation, fading to white, strong sharpening, shear, padding to a square,
emoji-like stickers, posterisation with a vignette, swapped colour channels, a repost chain (crop,
resize, gamma, mirror, JPEG), and three of those or of a few evaluation-set ones stacked. The first
``--indexed`` photos are indexed; per transform, ``--per-transform`` of them are modified and
queried (a hit: the original ranked first and judged a copy), and as many never-indexed photos get
the same transform (any match is a false positive; for ``paste`` and ``side_by_side`` the second
photo is never indexed either). Every query is a JPEG of quality 95
(``protocol.encode_query``) unless the transform says otherwise.

    .venv/bin/python scripts/stress_transforms.py --k 40,400 --out scripts/results/stress.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
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
from imgsearch.evaluate.overlays import caption_band, random_colour, resize, text_overlay

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


MIN_QUERY_SIDE = 64  # no query made here is smaller than this on its short side


def _stripes(image: Image, rng: Rng) -> Image:
    """6-12 evenly spaced opaque parallel stripes, 2-6 px wide, random angle and colour."""
    h, w = image.shape[:2]
    theta = float(rng.uniform(0.0, np.pi))
    d, n = np.array([np.cos(theta), np.sin(theta)]), np.array([-np.sin(theta), np.cos(theta)])
    centre = np.array([(w - 1) / 2.0, (h - 1) / 2.0])
    corners = np.array([[0, 0], [w - 1, 0], [0, h - 1], [w - 1, h - 1]], np.float64) - centre
    lo, hi = (corners @ n).min(), (corners @ n).max()
    count = int(rng.integers(6, 12, endpoint=True))
    step = (hi - lo) / count
    offsets = lo + step * (np.arange(count) + float(rng.uniform(0.25, 0.75)))
    thickness, colour = int(rng.integers(2, 6, endpoint=True)), random_colour(rng)
    out, reach = image.copy(), float(h + w)
    for off in offsets:
        a = np.rint(centre + off * n - reach * d).astype(int)
        b = np.rint(centre + off * n + reach * d).astype(int)
        cv2.line(out, (int(a[0]), int(a[1])), (int(b[0]), int(b[1])), colour, thickness, cv2.LINE_8)
    return out


def _pixelate(image: Image, rng: Rng) -> Image:
    h, w = image.shape[:2]
    f = float(rng.uniform(6.0, 10.0))
    small = cv2.resize(image, (max(1, round(w / f)), max(1, round(h / f))), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)


def _opacity(image: Image, rng: Rng) -> Image:
    alpha = float(rng.uniform(0.35, 0.55))
    return np.rint(alpha * image.astype(np.float32) + (1.0 - alpha) * 255.0).astype(np.uint8)


def _sharpen(image: Image, rng: Rng) -> Image:
    amount = float(rng.uniform(1.5, 2.5))
    return cv2.addWeighted(image, 1.0 + amount, cv2.GaussianBlur(image, (0, 0), 2.0), -amount, 0.0)


def _shear(image: Image, rng: Rng) -> Image:
    """Shear by ±0.25-0.4 along x or y on a canvas enlarged to fit, black fill."""
    h, w = image.shape[:2]
    s = float(rng.uniform(0.25, 0.4) * rng.choice([-1, 1]))
    m = (
        np.array([[1.0, s, 0.0], [0.0, 1.0, 0.0]])
        if rng.random() < 0.5
        else np.array([[1.0, 0.0, 0.0], [s, 1.0, 0.0]])
    )
    corners = np.array([[0, 0, 1], [w - 1, 0, 1], [0, h - 1, 1], [w - 1, h - 1, 1]], np.float64) @ m.T
    m[:, 2] -= corners.min(axis=0)
    size = np.ceil(corners.max(axis=0) - corners.min(axis=0)).astype(int) + 1
    return cv2.warpAffine(
        image, m, (int(size[0]), int(size[1])), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0)
    )


def _pad_square(image: Image, rng: Rng) -> Image:
    h, w = image.shape[:2]
    side = max(h, w)
    canvas = np.empty((side, side, 3), np.uint8)
    canvas[:] = random_colour(rng)
    y, x = int(rng.integers(0, side - h, endpoint=True)), int(rng.integers(0, side - w, endpoint=True))
    canvas[y : y + h, x : x + w] = image
    return resize(canvas, 256, 256)


def _bright_colour(rng: Rng, value: float) -> tuple[int, int, int]:
    hsv = np.array([[[rng.integers(0, 180), rng.integers(180, 256), value]]], np.uint8)
    r, g, b = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0]
    return int(r), int(g), int(b)


def _emoji(image: Image, rng: Rng) -> Image:
    """4-7 opaque stickers: a bright circle or rounded square with a darker circle inside."""
    h, w = image.shape[:2]
    out = image.copy()
    for _ in range(int(rng.integers(4, 7, endpoint=True))):
        size = max(6, round(float(rng.uniform(0.10, 0.18)) * min(h, w)))
        x0, y0 = int(rng.integers(0, w - size, endpoint=True)), int(rng.integers(0, h - size, endpoint=True))
        x1, y1, r = x0 + size - 1, y0 + size - 1, size // 2
        centre = (x0 + r, y0 + r)
        value = int(rng.integers(220, 256))
        colour, dark = _bright_colour(rng, value), _bright_colour(rng, value // 3)
        if rng.random() < 0.5:
            cv2.circle(out, centre, r, colour, -1, cv2.LINE_AA)
        else:
            c = max(1, size // 4)  # corner radius
            cv2.rectangle(out, (x0 + c, y0), (x1 - c, y1), colour, -1)
            cv2.rectangle(out, (x0, y0 + c), (x1, y1 - c), colour, -1)
            for cx, cy in ((x0 + c, y0 + c), (x1 - c, y0 + c), (x0 + c, y1 - c), (x1 - c, y1 - c)):
                cv2.circle(out, (cx, cy), c, colour, -1, cv2.LINE_AA)
        cv2.circle(out, centre, max(1, round(r * rng.uniform(0.3, 0.5))), dark, -1, cv2.LINE_AA)
    return out


def _posterize_vignette(image: Image, rng: Rng) -> Image:
    """3 bits a channel, then corners darkened by 50-70 % (quadratic in the radius)."""
    h, w = image.shape[:2]
    strength = float(rng.uniform(0.5, 0.7))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r2 = ((xx - (w - 1) / 2) / ((w - 1) / 2)) ** 2 + ((yy - (h - 1) / 2) / ((h - 1) / 2)) ** 2
    gain = 1.0 - strength * r2 / 2.0  # r2 is 2 in the corners
    out = (image & 0xE0).astype(np.float32) * gain[:, :, None]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


_PERMUTATIONS = ((0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0))  # all but the identity


def _channel_swap(image: Image, rng: Rng) -> Image:
    perm = _PERMUTATIONS[int(rng.integers(len(_PERMUTATIONS)))]
    return T.jpeg(np.ascontiguousarray(image[:, :, list(perm)]), rng, 60, 80)


def _repost_chain(image: Image, rng: Rng) -> Image:
    out = T.crop(image, rng, 0.5, 0.7)
    h, w = out.shape[:2]
    s = min(1.0, max(float(rng.uniform(0.5, 0.7)), MIN_QUERY_SIDE / min(h, w)))
    out = resize(out, w * s, h * s)
    g = float(rng.uniform(0.7, 1.4))
    out = cv2.LUT(out, np.clip(np.rint(255.0 * (np.arange(256) / 255.0) ** g), 0, 255).astype(np.uint8))
    if rng.random() < 0.5:
        out = np.ascontiguousarray(out[:, ::-1])
    return T.jpeg(out, rng, 40, 60)


# The pool of ``isc_stack``: the new ISC/AugLy-style transforms (by their STRESS name) and a few
# evaluation-set ones.
_STACK_NEW = (
    "meme",
    "stripes",
    "pixelate",
    "opacity",
    "sharpen",
    "shear",
    "pad_square",
    "emoji",
    "posterize_vignette",
    "channel_swap",
    "repost_chain",
)
_STACK_EVAL: dict[str, Callable[[Image, Rng], Image]] = {
    "crop_50": lambda im, r: T.crop(im, r, 0.5, 0.5),
    "rotate_10_30": lambda im, r: T.rotate(im, float(r.uniform(10, 30) * r.choice([-1, 1])), fill=(0, 0, 0)),
    "jpeg_50": lambda im, r: T.jpeg(im, r, 50, 50),
    "hue": lambda im, r: T.TRANSFORMS["hue"](im, r),
}


def _isc_stack(image: Image, rng: Rng, other: Image) -> Image:
    """Three distinct transforms drawn from the pool, applied in sequence."""
    pool = [*_STACK_NEW, *_STACK_EVAL]
    out = image
    for i in rng.choice(len(pool), 3, replace=False):
        name = pool[int(i)]
        out = STRESS[name][1](out, rng, other) if name in STRESS else _STACK_EVAL[name](out, rng)
    h, w = out.shape[:2]
    if min(h, w) < MIN_QUERY_SIDE:  # only after an unlucky run of shrinking steps
        out = resize(out, w * MIN_QUERY_SIDE / min(h, w), h * MIN_QUERY_SIDE / min(h, w))
    return np.ascontiguousarray(out)


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
    # ISC 2021 / AugLy style
    "meme": (
        "white band of 18-28 % of the height on top with 1-2 lines of black caption",
        lambda im, r, o: caption_band(im, r),
    ),
    "stripes": (
        "6-12 opaque parallel stripes 2-6 px wide, random angle and colour",
        lambda im, r, o: _stripes(im, r),
    ),
    "pixelate": (
        "downscaled 6-10x (INTER_AREA), upscaled back (INTER_NEAREST)",
        lambda im, r, o: _pixelate(im, r),
    ),
    "opacity": ("blended over white at alpha 0.35-0.55", lambda im, r, o: _opacity(im, r)),
    "sharpen": ("unsharp mask, amount 1.5-2.5, sigma 2 px", lambda im, r, o: _sharpen(im, r)),
    "shear": (
        "shear ±0.25-0.4 along x or y, canvas enlarged, black fill",
        lambda im, r, o: _shear(im, r),
    ),
    "pad_square": (
        "padded to a square with a solid colour at a random offset, resized to 256 px",
        lambda im, r, o: _pad_square(im, r),
    ),
    "emoji": (
        "4-7 bright circle or rounded-square stickers, 10-18 % of the short side",
        lambda im, r, o: _emoji(im, r),
    ),
    "posterize_vignette": (
        "3 bits a channel, corners darkened by 50-70 %",
        lambda im, r, o: _posterize_vignette(im, r),
    ),
    "channel_swap": (
        "RGB channels permuted (not the identity), JPEG 60-80",
        lambda im, r, o: _channel_swap(im, r),
    ),
    "repost_chain": (
        "crop 50-70 %, resize 0.5-0.7x (short side >= 64 px), gamma 0.7-1.4, mirror 1 in 2, JPEG 40-60",
        lambda im, r, o: _repost_chain(im, r),
    ),
    "isc_stack": (
        "3 distinct ones of the 11 above, crop 50 %, rotation ±10-30°, JPEG 50, hue ±15-60°, in sequence",
        _isc_stack,
    ),
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
            found_by: dict[str, int] = {}
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
                    if top == expected:
                        by = res.matches[0].search_pass or res.matches[0].tier
                        found_by[by] = found_by.get(by, 0) + 1
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
                    "found_by": found_by,  # hits by tier, or by local pass
                }
            )
        print(f"K={k}: {per_query_ms:.1f} ms a query over {len(queries)} queries", file=sys.stderr)
    return rows


def _found_rank(by: str) -> int:
    from imgsearch.results import LOCAL_PASSES

    order = ["exact", "global", *LOCAL_PASSES]
    return order.index(by) if by in order else len(order)


def run_negatives(args, others: list[str], overrides: dict):
    """The hard-negative protocol (:mod:`imgsearch.evaluate.shared`) with the stress transforms,
    on the photos never indexed by the stress set; ``other`` photos come from the same part."""
    from imgsearch.evaluate.negatives import KINDS
    from imgsearch.evaluate.shared import SharedEvalConfig, run_shared_eval

    background = io.read_image(others[0])
    fns = {name: (lambda im, r, fn=fn: fn(im, r, background)) for name, (_, fn) in STRESS.items()}
    config = SharedEvalConfig(
        photos=tuple(others[1:]),
        kinds=tuple(KINDS) if args.negatives == "all" else tuple(k for k in args.negatives.split(",") if k),
        designs=tuple(int(d) for d in args.negative_designs.split(",") if d),
        per_design=args.negative_size,
        copies=max(1, args.negative_size // 10),
        new_transforms=tuple(STRESS),
        copy_transforms=tuple(STRESS),
        seed=args.seed,
        workers=args.workers,
        search=overrides,
    )
    return run_shared_eval(config, transforms=fns)


def stress_queries(
    indexed: list[str], others: list[str], per_transform: int, seed: int
) -> list[tuple[str, str | None, bytes]]:
    """``(transform, expected path or None, encoded query)``: per transform, ``per_transform``
    copies of indexed photos and as many of never-indexed ones (``others``, which also give the
    second photo of the transforms that take one), seeded."""
    from imgsearch.evaluate.protocol import encode_query

    rng = np.random.default_rng(seed)
    queries: list[tuple[str, str | None, bytes]] = []
    for name, (_, fn) in STRESS.items():
        copies = rng.choice(len(indexed), per_transform, replace=False)
        distractors = rng.choice(len(others), min(per_transform, len(others)), replace=False)
        for i in copies:
            other = others[int(rng.integers(len(others)))]
            expected = os.path.realpath(indexed[i])  # as the index stores it (links resolved)
            queries.append(
                (name, expected, encode_query(fn(io.read_image(indexed[i]), rng, io.read_image(other))))
            )
        for i in distractors:
            other = others[int(rng.integers(len(others)))]
            queries.append(
                (name, None, encode_query(fn(io.read_image(others[i]), rng, io.read_image(other))))
            )
    return queries


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", nargs="?", type=Path, default=workload.DEFAULT_PHOTOS)
    parser.add_argument("--indexed", type=int, default=800)
    parser.add_argument("--per-transform", type=int, default=40)
    parser.add_argument("--k", default="40,400", help="query keypoint budgets, comma-separated")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None, help="write the table as JSON here")
    parser.add_argument(
        "--negatives",
        default=None,
        help="also run the hard negatives (comma-separated kinds, or all) under these transforms: "
        "new images that share a mark, packaging or template with indexed ones, and their copies",
    )
    parser.add_argument("--negative-designs", default="100", help="design seeds of each hard-negative kind")
    parser.add_argument("--negative-size", type=int, default=40, help="indexed and new images per design")
    workload.add_search_option(parser)
    workload.add_keypoint_option(parser)
    args = parser.parse_args(argv)
    overrides = workload.search_overrides(parser, args, "keypoints")
    keypoints = workload.keypoint_config(parser, args)

    from imgsearch import Index, IndexConfig

    photos = workload.list_images(args.folder, None)
    indexed, others = photos[: args.indexed], photos[args.indexed :]
    if not others:
        raise SystemExit(f"error: need photos after the first {args.indexed} as distractors")
    ks = [int(k) for k in args.k.split(",")]
    queries = stress_queries(indexed, others, args.per_transform, args.seed)

    with tempfile.TemporaryDirectory(prefix="stress-") as tmp:
        with Index.create(Path(tmp) / "index", IndexConfig(keypoints=keypoints)) as index:
            report = index.add(indexed, workers=args.workers)
            if not report.ok:
                raise SystemExit(f"error: {len(report.failed)} photos failed to index")
            rows = run_queries(index, queries, ks, overrides)

    console = Console(width=140) if not sys.stdout.isatty() else Console()
    table = Table(
        title=f"stress transforms: {len(indexed)} indexed, {args.per_transform} copies + "
        f"{args.per_transform} distractors per transform, seed {args.seed}"
        + "".join(f", {item}" for item in args.search + args.keypoint)
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
    passes = Table(title="hits by the tier or local pass that found them")
    passes.add_column("K", justify="right")
    names = sorted({by for r in rows for by in r["found_by"]}, key=_found_rank)
    for by in names:
        passes.add_column(by, justify="right")
    for k in ks:
        mine = [r for r in rows if r["k"] == k]
        passes.add_row(str(k), *[str(sum(r["found_by"].get(by, 0) for r in mine)) for by in names])
    console.print(passes)
    negatives = run_negatives(args, others, overrides) if args.negatives else None
    if negatives is not None:
        for t in (negatives.false_positives, negatives.copies):
            rich = Table(title=t.title)
            for column in t.columns:
                rich.add_column(column, justify="right")
            for row in t.rows:
                rich.add_row(*[f"{v:.4f}" if isinstance(v, float) else str(v) for v in row])
            console.print(rich)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            json.dumps(
                {
                    "indexed": len(indexed),
                    "per_transform": args.per_transform,
                    "seed": args.seed,
                    "search": overrides,
                    "keypoints": dataclasses.asdict(keypoints),
                    "rows": rows,
                    **({"negatives": negatives.to_dict()} if negatives is not None else {}),
                },
                indent=1,
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
