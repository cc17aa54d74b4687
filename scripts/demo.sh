#!/usr/bin/env bash
# The main job on the bundled sample photos: set up, index tests/data, query with modified copies.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
INDEX=indexes/demo
rm -rf "$INDEX" && mkdir -p "$INDEX"
.venv/bin/imgsearch build tests/data --index "$INDEX"
QUERIES=$(mktemp -d)
trap 'rm -rf "$QUERIES"' EXIT
# Modified copies of bundled photos: a mirrored recompressed rescale, and a rotated 30 % crop.
.venv/bin/python - "$QUERIES" <<'PY'
import sys
import cv2
import numpy as np
out = sys.argv[1]
a = cv2.imread("tests/data/0003.jpg")
cv2.imwrite(f"{out}/mirrored_small.jpg", cv2.resize(a[:, ::-1], None, fx=0.6, fy=0.6), [cv2.IMWRITE_JPEG_QUALITY, 40])
b = cv2.imread("tests/data/0012.jpg")
h, w = b.shape[:2]
crop = b[int(h * 0.3) : int(h * 0.85), int(w * 0.35) : int(w * 0.9)]
m = cv2.getRotationMatrix2D((crop.shape[1] / 2, crop.shape[0] / 2), 25, 1.0)
cv2.imwrite(f"{out}/rotated_crop.jpg", cv2.warpAffine(crop, m, (crop.shape[1], crop.shape[0])))
rng = np.random.default_rng(0)
cv2.imwrite(f"{out}/unrelated_noise.png", rng.integers(0, 256, (180, 240, 3), dtype=np.uint8))
PY
.venv/bin/imgsearch query "$QUERIES"/mirrored_small.jpg "$QUERIES"/rotated_crop.jpg "$QUERIES"/unrelated_noise.png --index "$INDEX"
