"""Choose the global tier's Hamming threshold by measurement.

Index ~800 photos (their pHashes), hold the rest out as distractors. For every transform the global
tier is meant to handle, make one modified copy of each indexed photo and of each distractor. For
each threshold d, a copy is a hit when its original is the nearest indexed image over the 16 variants
of its hash that the global tier compares (8 dihedral, 8 of the negative) and within d bits; a
distractor query (plain or modified) is a false positive when any indexed image is within d bits. Prints the table and saves it as JSON and a PNG.

    .venv/bin/python scripts/global_threshold.py [--photos DIR] [--out scripts/results/global]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from imgsearch import hashing, io
from imgsearch.evaluate.protocol import encode_query
from imgsearch.evaluate.transforms import TRANSFORMS

GLOBAL_TRANSFORMS = (
    "jpeg",
    "rescale_down",
    "rescale_up",
    "mirror",
    "vflip",
    "rot90",
    "rot180",
    "rot270",
    "brightness_contrast",
    "saturation",
    "gamma",
    "grayscale",
    "blur",
    "noise",
    "hue",
)
THRESHOLDS = range(0, 21)


def gray_of(rgb: np.ndarray) -> np.ndarray:
    """Round-trip through JPEG q95 like a real upload, then decode to gray as the engine does."""
    return io.decode_image(encode_query(rgb), min_side=64, gray=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", default="../shared/data/photos")
    ap.add_argument("--indexed", type=int, default=800)
    ap.add_argument("--out", default="scripts/results/global")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    paths = sorted(Path(args.photos).glob("*.jpg"))
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(paths))
    indexed, held = [paths[i] for i in order[: args.indexed]], [paths[i] for i in order[args.indexed :]]
    db = np.stack([hashing.phash(io.read_image(p, min_side=64, gray=True)) for p in indexed])

    def nearest(gray: np.ndarray) -> tuple[int, int]:
        variants = hashing.threshold_bits(hashing.variant_coefficients(hashing.phash_coefficients(gray)))
        d = hashing.hamming(variants[:, None, :], db[None]).min(axis=0)
        k = int(np.argmin(d))
        return k, int(d[k])

    true_dist: dict[str, list[int]] = {t: [] for t in GLOBAL_TRANSFORMS}
    for i, p in enumerate(indexed):
        rgb = io.read_image(p)
        for t in GLOBAL_TRANSFORMS:
            k, d = nearest(gray_of(TRANSFORMS[t](rgb, np.random.default_rng(args.seed * 100003 + i))))
            true_dist[t].append(d if k == i else 99)
    hits = {
        t: np.array([(np.array(true_dist[t]) <= d).mean() for d in THRESHOLDS]) for t in GLOBAL_TRANSFORMS
    }
    fp_dist = []
    for i, p in enumerate(held):
        rgb = io.read_image(p)
        fp_dist.append(nearest(gray_of(rgb))[1])
        for t in GLOBAL_TRANSFORMS:
            fp_dist.append(nearest(gray_of(TRANSFORMS[t](rgb, np.random.default_rng(7 + i))))[1])
    fp_arr = np.array(fp_dist)
    fps = np.array([(fp_arr <= d).sum() for d in THRESHOLDS])

    print(
        f"{len(indexed)} indexed, {len(held)} distractors x {1 + len(GLOBAL_TRANSFORMS)} variants = {len(fp_arr)} distractor queries"
    )
    print(f"closest distractor query: {fp_arr.min()} bits")
    header = "d   " + " ".join(f"{t[:9]:>9s}" for t in GLOBAL_TRANSFORMS) + "      all   FP"
    print(header)
    for j, d in enumerate(THRESHOLDS):
        rates = [hits[t][j] for t in GLOBAL_TRANSFORMS]
        print(f"{d:<3d} " + " ".join(f"{r:9.3f}" for r in rates) + f" {np.mean(rates):8.3f} {fps[j]:4d}")
    safe = [d for j, d in enumerate(THRESHOLDS) if fps[j] == 0]
    print(f"largest threshold with zero false positives: {max(safe) if safe else None}")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = {
        "indexed": len(indexed),
        "distractor_queries": len(fp_arr),
        "thresholds": list(THRESHOLDS),
        "hit_rate": {t: hits[t].tolist() for t in GLOBAL_TRANSFORMS},
        "false_positives": fps.tolist(),
        "closest_distractor_bits": int(fp_arr.min()),
    }
    (out / "global_threshold.json").write_text(json.dumps(data, indent=1))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for t in GLOBAL_TRANSFORMS:
        ax.plot(list(THRESHOLDS), hits[t], label=t, lw=1)
    ax2 = ax.twinx()
    ax2.bar(list(THRESHOLDS), fps, color="red", alpha=0.3, label="false positives")
    ax.set_xlabel("Hamming threshold (bits of 64)")
    ax.set_ylabel("hit rate")
    ax2.set_ylabel("false positives (distractor queries)")
    ax.legend(fontsize=6, ncol=2, loc="center right")
    fig.tight_layout()
    fig.savefig(out / "global_threshold.png", dpi=110)
    print(f"wrote {out}/global_threshold.json and .png")


if __name__ == "__main__":
    main()
