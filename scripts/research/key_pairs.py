"""True keypoint pairs of copies, and the voting rows of an index, for choosing the postings' key bits.

Research script (issue 12: rows a probe reads). Indexes the first ``--indexed`` photos of FOLDER
(the tune half), makes ``--per-image`` copies of each under the evaluation's transforms (seeded,
round robin), and for each copy fits its known original directly (direct and mirrored passes,
``LocalIndex._fit``, whatever the votes): the inlier pairs whose indexed keypoint votes (one of the
first ``KeypointConfig.hashed``) give (query code, query bit margins, indexed code). Saves them
with every voting code of the index to ``--out`` (.npz) for ``key_bits.py``.

    .venv/bin/python scripts/research/key_pairs.py /tmp/tune_photos --out /tmp/keybits/tune.npz
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import workload

from imgsearch import Index, IndexConfig
from imgsearch import passes as ps
from imgsearch.evaluate import transforms as T
from imgsearch.keypoints import downscale
from imgsearch.store import postings


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("folder", type=Path)
    parser.add_argument("--indexed", type=int, default=475)
    parser.add_argument("--per-image", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    a = parser.parse_args()
    photos = [Path(p) for p in workload.list_images(a.folder)[: a.indexed]]
    names = [t.name for t in T.get_transforms() if t.name != "exact_copy"]
    with tempfile.TemporaryDirectory() as tmp:
        Index.create(Path(tmp) / "ix", IndexConfig())
        with Index.open(Path(tmp) / "ix") as index:
            index.add([str(p) for p in photos], workers=2)
        with Index.open(Path(tmp) / "ix") as index:
            local, cfg = index.local, index.config.search
            kc = local.kconfig
            ids = {Path(index.path_of(i)).name: i for i in range(len(index))}
            rows = [index.reader.read_local(i, ("patch_hash",))["patch_hash"][: kc.hashed, 0, :] for i in ids.values()]
            qc, qm, sc, which = [], [], [], []
            n = 0
            for k, photo in enumerate(photos):
                image = cv2.cvtColor(cv2.imread(str(photo)), cv2.COLOR_BGR2RGB)
                for j in range(a.per_image):
                    name = names[(k * a.per_image + j) % len(names)]
                    copy = T.apply_transform(name, image, a.seed + 1000 * k + j)
                    gray = cv2.cvtColor(copy, cv2.COLOR_RGB2GRAY)
                    small, ratio = downscale(gray, cfg.query_side)
                    direct = ps.query_pass(small, False, ratio, cfg, kc)
                    best = None
                    for qp in (direct, ps.mirror_pass(direct, small, cfg, kc)):
                        fit = local._fit(ids[photo.name], 0, qp, cfg)
                        if not isinstance(fit, str) and (best is None or fit.inliers > best[1].inliers):
                            best = (qp, fit)
                    if best is None:
                        continue
                    qp, fit = best
                    where = {int(r): i for i, r in enumerate(qp.lookup)}
                    stored = index.reader.read_local(fit.image, ("patch_hash",))["patch_hash"][:, 0, :]
                    for q, s in fit.inlier_pairs:
                        if int(s) < kc.hashed and int(q) in where:
                            i = where[int(q)]
                            qc.append(qp.hashes[i])
                            qm.append(qp.margins[i])
                            sc.append(stored[s])
                            which.append(n)
                    n += 1
            print(f"{n} copies fitted, {len(qc)} voting inlier pairs, {sum(len(r) for r in rows)} voting rows")
            a.out.parent.mkdir(parents=True, exist_ok=True)
            np.savez_compressed(
                a.out, q=postings.codes_of(np.array(qc)), margins=np.array(qm, np.float32),
                s=postings.codes_of(np.array(sc)), copy=np.array(which), rows=postings.codes_of(np.concatenate(rows)),
            )  # fmt: skip


if __name__ == "__main__":
    main()
