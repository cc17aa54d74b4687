"""The files a benchmark runs on: photo listing, page-cache warming, big copies, modified-copy queries.

Shared by ``bench_ingest.py``, ``bench_query.py`` and ``compare_peers.py`` (imported as a sibling
module: ``python scripts/<name>.py`` puts ``scripts/`` on ``sys.path``). Everything it writes goes
to a temporary folder the caller owns; the shared photos are only read.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

DEFAULT_PHOTOS = Path("/work/shared/data/photos")
TESTS_DATA = Path(__file__).resolve().parent.parent / "tests" / "data"
SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"})


def list_images(folder: Path, limit: int | None = None) -> list[str]:
    """Image files directly in ``folder`` (by suffix), sorted, absolute; at most ``limit``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SystemExit(f"error: {folder} is not a folder of images")
    files = sorted(str(p.absolute()) for p in folder.iterdir() if p.suffix.lower() in SUFFIXES)
    if not files:
        raise SystemExit(f"error: no image files in {folder}")
    return files[:limit] if limit else files


def warm_cache(files: list[str]) -> int:
    """Read every file once so that timings start from a warm page cache; returns the bytes read."""
    total = 0
    for f in files:
        with open(f, "rb") as fh:
            total += len(fh.read())
    return total


def fewest_keypoints(folder: Path, n: int, out_dir: Path) -> Path:
    """Links in ``out_dir`` to the ``n`` images of ``folder`` with the fewest SIFT keypoints at the
    index's 210 px, counted with the contrast floor off (objects on plain backgrounds); returns
    ``out_dir``."""
    from imgsearch import KeypointConfig, io
    from imgsearch import keypoints as kp_mod

    config = KeypointConfig(contrast_floor=kp_mod.SIFT_CONTRAST)
    detector = kp_mod.make_detector(config)
    files = list_images(folder)
    counts = []
    for f in files:
        small, _ = kp_mod.downscale(io.read_image(f, gray=True), config.max_side)
        counts.append(len(detector.detect_and_describe(small, config.budget, describe=False)))
    out_dir.mkdir(parents=True, exist_ok=True)
    for i in np.argsort(counts, kind="stable")[:n]:
        (out_dir / Path(files[i]).name).symlink_to(files[i])
    return out_dir


def megapixels(files: list[str]) -> float:
    """Mean size of ``files`` in megapixels (from the decoded images)."""
    sizes = []
    for f in files:
        img = cv2.imread(f, cv2.IMREAD_REDUCED_GRAYSCALE_8)  # 1/8 decode: cheap, size up to rounding
        if img is not None:
            sizes.append(img.shape[0] * img.shape[1] * 64 / 1e6)
    return statistics.fmean(sizes) if sizes else 0.0


def make_big(
    files: list[str], out_dir: Path, megapixels_target: float = 1.92, quality: int = 90
) -> list[str]:
    """Upscale each file to about ``megapixels_target`` MP (INTER_CUBIC), saved as JPEG ``quality``.

    1.92 MP is 1600×1200 for a 4:3 photo; other aspect ratios keep their shape and area, so every
    output is within 1-2 MP.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    out = []
    for f in files:
        img = cv2.imread(f, cv2.IMREAD_COLOR)
        if img is None:
            continue
        h, w = img.shape[:2]
        factor = (megapixels_target * 1e6 / (w * h)) ** 0.5
        big = cv2.resize(img, (round(w * factor), round(h * factor)), interpolation=cv2.INTER_CUBIC)
        path = out_dir / (Path(f).stem + ".jpg")
        cv2.imwrite(str(path), big, [cv2.IMWRITE_JPEG_QUALITY, quality])
        out.append(str(path))
    return out


@dataclass(frozen=True)
class Query:
    """One query file and the indexed file it is a copy of (``None`` for a distractor)."""

    path: str
    source: str
    transform: str
    expected: str | None


def write_query(source: str, transform: str, seed: int, path: Path, expected: str | None) -> Query:
    """Apply ``transform`` (seeded) to ``source`` and save it to ``path`` as JPEG quality 95.

    ``exact_copy`` and ``"plain"`` (an unmodified query) copy the file bytes instead, keeping the
    source's suffix.
    """
    from imgsearch.evaluate.protocol import encode_query
    from imgsearch.evaluate.transforms import TRANSFORMS, apply_transform
    from imgsearch.io import read_image

    path.parent.mkdir(parents=True, exist_ok=True)
    if transform == "plain" or TRANSFORMS[transform].exact_copy:
        path = path.with_suffix(Path(source).suffix)
        shutil.copyfile(source, path)
    else:
        path.write_bytes(encode_query(apply_transform(transform, read_image(source), seed)))
    return Query(str(path), source, transform, expected)


def make_queries(
    indexed: list[str], transforms: list[str], count: int, seed: int, out_dir: Path
) -> list[Query]:
    """``count`` modified copies of indexed files: transforms in turn, sources drawn at random (seeded)."""
    rng = np.random.default_rng(seed)
    sources = rng.choice(len(indexed), size=count, replace=count > len(indexed))
    queries = []
    for i, src in enumerate(sources):
        t = transforms[i % len(transforms)]
        source = indexed[int(src)]
        queries.append(write_query(source, t, seed * 100_003 + i, out_dir / f"{i:05d}_{t}.jpg", source))
    return queries


def rss_bytes() -> int:
    """Resident set size of this process now (``VmRSS`` of ``/proc/self/status``), in bytes."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # peak, not current


def add_search_option(parser) -> None:
    """``--search NAME=VALUE`` (repeatable): a ``SearchConfig`` field for every query of a script."""
    parser.add_argument(
        "--search",
        action="append",
        default=[],
        help="NAME=VALUE: a SearchConfig field, e.g. zoom_factor=null",
    )


def add_keypoint_option(parser) -> None:
    """``--keypoint NAME=VALUE`` (repeatable): a ``KeypointConfig`` field of the index a script builds."""
    parser.add_argument(
        "--keypoint",
        action="append",
        default=[],
        help="NAME=VALUE: a KeypointConfig field of the index, e.g. hashed=160",
    )


def keypoint_config(parser, args):
    """The ``KeypointConfig`` the ``--keypoint`` settings describe (a usage error when invalid)."""
    from imgsearch import ConfigError, KeypointConfig
    from imgsearch.cli.common import parse_setting

    try:
        return KeypointConfig(**dict(parse_setting(item) for item in args.keypoint))
    except (ConfigError, TypeError) as exc:
        parser.error(f"--keypoint: {exc}")


def search_overrides(parser, args, reserved: str) -> dict:
    """The ``--search`` settings as ``SearchConfig`` overrides; ``reserved`` is the field the script
    sets itself (a usage error when given)."""
    from imgsearch.cli.common import parse_setting

    overrides = dict(parse_setting(item) for item in args.search)
    if reserved in overrides:
        parser.error(f"--search {reserved}=...: the script sets {reserved} itself")
    return overrides


def cpu_note() -> str:
    """A one-line description of the machine the numbers come from."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{os.cpu_count()} cores, load average {load:.2f} at start"


def save_json(result: dict, path: Path | None, console) -> None:
    """Write a benchmark's result as indented JSON when ``path`` is given, and say so."""
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    console.print(f"saved {path}")


def paired_table(
    title: str,
    label: str,
    found_column: str,
    times: dict[tuple[str, str], list[float]],
    found: dict[tuple[str, str], int],
    ratios: dict[str, list[float]],
    counts: dict[str, int],
    candidate: str,
):
    """The table and JSON rows of a paired timing run (``bench_settings.py``, ``bench_versions.py``):
    ``times[(who, kind)]`` ms of each query, ``found[(who, kind)]``, ``ratios[kind]`` the
    candidate's mean over the baseline's, round by round, ``counts[kind]`` queries; ``who`` is
    ``candidate`` or the baseline, under the column and key ``label``."""
    from rich.table import Table

    table = Table(title=title)
    for col in (label, "queries", "n", "mean", "p50", "p95", found_column, "mean ratio"):
        table.add_column(col, justify="right")
    rows = []
    for (who, kind), values in times.items():
        p50, p95 = np.percentile(values, [50, 95])
        ratio = statistics.median(ratios[kind]) if who == candidate else 1.0
        row = {
            label: who,
            "queries": kind,
            "n": counts[kind],
            "mean_ms": statistics.fmean(values),
            "p50_ms": float(p50),
            "p95_ms": float(p95),
            "found": found[(who, kind)],
            "ratio": ratio,
            "ratios": ratios[kind] if who == candidate else [],
        }
        rows.append(row)
        table.add_row(
            who, kind, str(row["n"]), f"{row['mean_ms']:.1f}", f"{p50:.1f}", f"{p95:.1f}", str(row["found"]),
            f"{ratio:.3f}",
        )  # fmt: skip
    return table, rows

