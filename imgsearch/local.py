"""The local tier: patch-hash votes, then geometric verification of the best-voted images.

A query is downscaled to ``SearchConfig.query_side`` (180 px; the indexed images to ``max_side``,
210); ``max(K, verify_keypoints)`` grid-spread keypoints are detected and described, and the
patches of K of them (grid-spread too) are hashed at the query scales and looked up in one Hamming
range search among the first ``KeypointConfig.hashed`` keypoints of each indexed image; each of
those query keypoints votes at most once per indexed image. When this direct pass finds no copy, a mirrored pass runs
(descriptors and patches are not mirror-invariant): for SIFT it is derived from the direct pass
(mirrored positions and angles, patches upside down, permuted descriptors), for ORB and BRIEF the
mirrored query is detected again. When neither finds a copy and more keypoints were described than
K, both (the direct one alone with ``mirror`` off) run again with every described keypoint looking
up (the full passes: the detected keypoints are reused; a hard copy, a shear or a strong
combination, often has too few of its K lookups meet their indexed keypoints). When these find nothing either and the query is large enough, the
direct and mirrored passes run again on the query at ``zoom_factor`` times ``query_side`` (the
zoomed passes: a photo shrunk into a page or another photo is too small at 180 px), looking up all
the keypoints they describe and accepting only copies that still show smaller than indexed
(:data:`ZOOM_MIN_SCALE`).

The images with the most votes, and the global tier's candidates (``hints``), are verified one by
one (:mod:`imgsearch.verify`), on their own stored keypoints only, so a candidate's verdict depends
on the query and that candidate alone and shards merge exactly. A candidate is a copy when at least
``min_inliers`` distinct query keypoints agree with the fitted map, its scale is plausible and, in a
zoomed pass, shows the copy smaller than indexed.

Coordinates: keypoint positions are ``(x, y)`` in the keypoint image's pixels (y down). The
transform maps query keypoint-image pixels to indexed keypoint-image pixels; footprints are reported
in the indexed image's original pixels.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from . import agreement, decide, hashing, verify
from . import keypoints as kp_mod
from .config import IndexConfig, SearchConfig
from .extract import keypoint_rows
from .index.binary import HammingIndex
from .index.store import Store
from .results import FULL_PASS, MIRRORED_PASS, ZOOMED_PASS, Geometry, Match, Rejection

SCALE_RANGE = (1 / 12, 12.0)  # plausible indexed/query scale of a copy, in keypoint-image pixels
# The zoomed pass is for copies too small in the query at query_side: zoomed, they still show
# smaller than indexed (scale above 1). Measured: photos pasted into another photo matched there at
# 2.2-4.1, while distinct photos sharing a caption matched on it at 0.76-0.93 (the caption is as
# large in both), so a zoomed match below 1 is refused: 20 % caption shared by 300 indexed and 149
# queried photos (scripts/shared_overlay.py), 65 false positives without the zoomed pass, 113 with
# it, 66 with it and this test.
ZOOM_MIN_SCALE = 1.0
# Multi-index hashing with 16-bit tables. Measured on 800 photos (J=400, 264 K rows): exact-substring
# probes search 400 query hashes in 1.3 ms; one-bit probes find 45 % more radius-8 neighbours at
# 10x the cost (0.4 and 1.1 ms for 40 hashes). Probing one bit is worth it when a query has few hashes.
# Global matches are confirmed on this many of the image's stored keypoints (the first ones, spread
# over the image): about 0.5 ms on one core (32 would be as fast: the cost is mostly fixed).
CONFIRM_KEYPOINTS = 48
MIH_TABLES = 4
FLIP_MAX_HASHES = 160  # auto hash_flips: 1 for at most this many query hashes, else 0


@dataclass
class QueryPass:
    """One orientation of the query: its keypoints (rows as stored), descriptors, mirrored or not."""

    rows: np.ndarray  # (K, 5) float32 x, y, size, angle, response
    descriptors: np.ndarray
    hashes: np.ndarray  # (K * S, 8)
    mirrored: bool
    shape: tuple[int, int]
    ratio: float  # keypoint-image pixels per pixel of the query at full size
    lookup: np.ndarray  # (K,) rows of the keypoints whose patch hashes were looked up
    patches: np.ndarray  # (K * S, 32, 32) float32 patches behind ``hashes``
    image: np.ndarray  # (H, W) uint8: the keypoint image the keypoints were found in (mirrored or not)
    zoomed: bool = False  # a pass at SearchConfig.zoom_factor times query_side
    full: bool = False  # a pass at query_side looking up every described keypoint, whatever K
    # All the described keypoints and their scale-1 patches (None for native descriptors), kept by
    # a detected pass whose lookups are fewer, so that its full pass needs no second detection.
    source: tuple[kp_mod.Keypoints, np.ndarray | None] | None = None
    # In a full pass, the keypoints (rows) the pass before it looked up: their hashes are probed as
    # that pass probed them (its auto hash_flips), so that the full pass finds all its pairs too.
    first: np.ndarray | None = None
    hull_area: float = field(init=False)  # of all the keypoints: the reference of coverage
    _fill: np.ndarray | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.hull_area = verify.hull_area(self.rows[:, :2])

    @property
    def fill(self) -> np.ndarray:
        """:func:`imgsearch.agreement.fill_mask` of :attr:`image`, computed at the first use."""
        if self._fill is None:
            self._fill = agreement.fill_mask(self.image)
        return self._fill

    @property
    def name(self) -> str:
        """The pass as matches report it, one of :data:`imgsearch.results.LOCAL_PASSES`."""
        flags = (("zoomed", self.zoomed), ("full", self.full), ("mirrored", self.mirrored))
        return " ".join(w for w, on in flags if on) or "direct"


class LocalIndex:
    """The in-memory part of the local tier of one store: patch hashes in FAISS, keypoint owners."""

    def __init__(self, store: Store, config: IndexConfig) -> None:
        if config.keypoints is None:
            raise ValueError("LocalIndex needs an index configured with keypoints")
        self.store = store
        self.kconfig = config.keypoints
        self.binary_descriptors = kp_mod.descriptor_kind(self.kconfig) == "binary"
        # The mirrored passes derive from the direct ones (SIFT), else are detected (ORB, BRIEF).
        self._mirror_derived = kp_mod.mirror_equivariant(self.kconfig)
        self.offsets = store.images.offsets
        self.kp_scale = store.images.columns["kp_scale"]
        self.global_hashes = store.images.columns["global_hash"]
        hashes = store.patch_hashes()
        self.scales_per_kp = hashes.shape[1]
        # Only the first ``hashed`` keypoints of each image (stored in grid-spread order) vote.
        counts = np.diff(self.offsets)
        if self.kconfig.hashed is not None and len(hashes):
            hashes = hashes[
                np.arange(len(hashes)) - np.repeat(self.offsets[:-1], counts) < self.kconfig.hashed
            ]
            counts = np.minimum(counts, self.kconfig.hashed)
        # Image offsets of the voting keypoints' rows (hash rows // scales_per_kp).
        self.hashed_offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        # Multi-index hashing at any size: a flat scan was 36x slower (FAISS's MIH then) for 400
        # query hashes over 65 K rows, and both kinds return the same rows by construction.
        self.hashes = HammingIndex("mih", tables=MIH_TABLES)
        self.hashes.add(hashes.reshape(-1, hashes.shape[-1]))

    def image_of(self, keypoint: np.ndarray) -> np.ndarray:
        """Indexed image of each global keypoint row (a search in the image offsets, no table)."""
        return np.searchsorted(self.offsets, keypoint, side="right") - 1

    def keypoint_of(self, voter: np.ndarray) -> np.ndarray:
        """Global keypoint row of each voting keypoint row (the hash index's rows over the scales)."""
        image = np.searchsorted(self.hashed_offsets, voter, side="right") - 1
        return self.offsets[image] + (voter - self.hashed_offsets[image])

    def confirm_global(self, gray: np.ndarray, image: int, variant: str) -> float:
        """Agreement (:mod:`imgsearch.agreement`) of a query whose global hash matched ``image``
        through ``variant`` (a :data:`imgsearch.hashing.VARIANT_NAMES` name): the ``(H, W)`` uint8
        query is turned by that variant (negated for an inverted one), resized to the image's
        keypoint image, and its first :data:`CONFIRM_KEYPOINTS` stored keypoints (spread over it)
        are described there again."""
        name = variant.removeprefix("inverted ")
        aligned = hashing.apply_dihedral(gray, name)
        if name != variant:
            aligned = 255 - aligned
        cols = self.store.images.columns
        scale = float(self.kp_scale[image])
        size = (
            max(1, round(float(cols["width"][image]) * scale)),
            max(1, round(float(cols["height"][image]) * scale)),
        )
        shrink = size[0] * size[1] < aligned.shape[0] * aligned.shape[1]
        aligned = cv2.resize(
            np.ascontiguousarray(aligned), size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
        )
        stored = self.store.read_local(image, ("keypoints", "descriptors", "patch_hash"), CONFIRM_KEYPOINTS)
        result = agreement.agreement(
            aligned,
            np.zeros(aligned.shape, bool),  # the whole image, resized: no padding to look for
            stored["keypoints"],
            np.eye(2, 3),
            None if self.kconfig.descriptor != "patch" else stored["descriptors"],
            stored["patch_hash"][:, 0, :],
            self.kconfig.patch_scales[0],
        )
        return result.fraction()

    # -- query side ---------------------------------------------------------------------
    def query_pass(
        self,
        small: np.ndarray,
        mirrored: bool,
        ratio: float,
        cfg: SearchConfig,
        zoomed: bool = False,
    ) -> QueryPass:
        """Detect the query's keypoints in its (mirrored) keypoint image and hash the lookup ones.

        ``max(K, verify_keypoints)`` grid-spread keypoints are detected and described once; the K
        lookup keypoints, a grid-spread subset, are hashed and cast votes; all of them serve in
        verification. Hashes are ``(K * S, 8)``, lookup
        keypoint-major; ``lookup`` holds the row numbers (into ``rows``) of the lookup keypoints.
        """
        img = np.ascontiguousarray(small[:, ::-1]) if mirrored else small
        kps, unit = kp_mod.detect_features(img, self.kconfig, max(cfg.keypoints, cfg.verify_keypoints))
        lookup = None  # all of them look up
        if len(kps) > cfg.keypoints:
            lookup = np.sort(
                kp_mod.select_spread(kps.xy, kps.response, img.shape[:2], self.kconfig.grid, cfg.keypoints)
            )
        return _pass_of(kps, unit, img, lookup, mirrored, ratio, cfg, zoomed, full=False)

    def full_pass(self, qp: QueryPass, small: np.ndarray, cfg: SearchConfig) -> QueryPass | None:
        """Pass ``qp`` again with every keypoint it described looking up (a full pass), from the
        keypoints it kept; ``None`` when it kept none (all of them looked up already, or a pass
        derived by mirroring: :meth:`mirror_pass` of the direct full pass serves then)."""
        if qp.source is None:
            return None
        kps, unit = qp.source
        img = np.ascontiguousarray(small[:, ::-1]) if qp.mirrored else small
        return _pass_of(kps, unit, img, None, qp.mirrored, qp.ratio, cfg, False, True, first=qp.lookup)

    def mirror_pass(self, qp: QueryPass, small: np.ndarray, cfg: SearchConfig) -> QueryPass:
        """The mirrored pass, derived from the direct one when the detector allows (SIFT), else detected.

        SIFT finds the mirrored keypoints in a mirrored image (:func:`imgsearch.keypoints.mirror_rows`),
        their patches are the direct ones upside down, and their descriptors a fixed permutation, so
        no second detection is needed.
        """
        desc = kp_mod.mirror_descriptors(self.kconfig, qp.descriptors)
        if desc is None:
            return self.query_pass(small, True, qp.ratio, cfg, qp.zoomed)
        rows = qp.rows.copy()
        rows[:, :2], rows[:, 3] = kp_mod.mirror_rows(qp.rows[:, :2], qp.rows[:, 3], qp.shape[1])
        blocks = np.ascontiguousarray(qp.patches[:, ::-1, :])
        hashes = hashing.patch_hashes(blocks)
        return QueryPass(
            rows,
            desc,
            hashes,
            True,
            qp.shape,
            qp.ratio,
            qp.lookup,
            blocks,
            np.ascontiguousarray(qp.image[:, ::-1]),
            qp.zoomed,
            qp.full,
            first=qp.first,
        )

    def search(
        self,
        gray: np.ndarray,
        cfg: SearchConfig,
        path_of: Callable[[int], str],
        hints: Sequence[tuple[int, bool, int]] = (),
        *,
        side: int | None = None,
        zoomed: bool = False,
        full_side: int | None = None,
        region: decide.SharedRegion | None = None,
    ) -> tuple[list[Match], list[Rejection]]:
        """Matches and rejections for a ``(H, W)`` uint8 query (any size; downscaled here).

        The query is downscaled to ``side`` (default ``cfg.query_side``, else the index's
        ``max_side``); ``zoomed`` marks the passes as zoomed ones (:data:`ZOOMED_PASS`; the caller
        has them look up every keypoint by ``cfg.keypoints``); ``full_side`` is the query's long
        side at full size when ``gray`` was decoded smaller (a JPEG), so that the reported scale is
        per pixel of the query file. The passes run in the order of
        :data:`imgsearch.results.LOCAL_PASSES` and stop at the first that finds a copy: direct,
        mirrored (with ``cfg.mirror``), then, when K keypoints looked up and more were described,
        the full passes, which look them all up (:data:`FULL_PASS`). ``hints`` are ``(image id,
        reflected, global distance)`` candidates of the global tier: each is verified in the first
        pass of its orientation, whatever its votes. ``region`` gathers, pass after pass, where
        several indexed pictures fit the query (:class:`imgsearch.decide.SharedRegion`); give one
        object to every call for one query.
        """
        region = decide.SharedRegion() if region is None else region
        if len(self.hashes) == 0:
            reason = "the index holds no keypoints to verify against"
            passes = {False: "direct", True: "mirrored"}
            return [], [
                Rejection(
                    path_of(i), "local", f"global candidate at {d} bits: {reason}", search_pass=passes[r]
                )
                for i, r, d in hints
            ]
        small, ratio = kp_mod.downscale(gray, side or cfg.query_side or self.kconfig.max_side)
        if full_side is not None:
            ratio *= max(gray.shape) / max(full_side, max(gray.shape))
        direct = self.query_pass(small, False, ratio, cfg, zoomed)
        hinted = {False: {i: d for i, r, d in hints if not r}, True: {i: d for i, r, d in hints if r}}
        matches, rejected = self._search_pass(direct, cfg, path_of, hinted[False], region)
        if matches:
            return matches, rejected
        mirrored = None
        if cfg.mirror or hinted[True]:
            # With mirror off, the mirrored pass only verifies the global tier's reflected candidates.
            mirrored = self.mirror_pass(direct, small, cfg)
            matches, rej = self._search_pass(mirrored, cfg, path_of, hinted[True], region, vote=cfg.mirror)
            rejected += rej
            if matches:
                return matches, rejected
        full = self.full_pass(direct, small, cfg)  # None when every keypoint looked up already
        if full is not None:
            matches, rej = self._search_pass(full, cfg, path_of, {}, region)
            rejected += rej
            if matches:
                return matches, rejected
        if not cfg.mirror or mirrored is None:
            return matches, rejected
        # The mirrored detection's own (ORB, BRIEF), or derived from the direct full pass (SIFT).
        full_mirrored = self.full_pass(mirrored, small, cfg)
        if full_mirrored is None and full is not None and self._mirror_derived:
            full_mirrored = self.mirror_pass(full, small, cfg)
        if full_mirrored is None:
            return matches, rejected
        matches, rej = self._search_pass(full_mirrored, cfg, path_of, {}, region)
        return matches, rejected + rej

    def _search_pass(
        self,
        qp: QueryPass,
        cfg: SearchConfig,
        path_of: Callable[[int], str],
        hinted: dict[int, int],
        region: decide.SharedRegion,
        vote: bool = True,
    ) -> tuple[list[Match], list[Rejection]]:
        """Vote with one pass's patch hashes, then verify the hinted and (if ``vote``) the best-voted.

        Query keypoints in the shared ``region`` (known from earlier passes, and grown as this
        pass fits candidates of different pictures on the same keypoints) do not count as votes: a
        candidate left with fewer than ``min_votes`` is not fitted.
        """
        pairs = self._hash_pairs(qp, cfg)  # (P, 2): query kp, indexed kp
        images = self.image_of(pairs[:, 1])
        # One vote per (query keypoint, image).
        votes_key = verify.unique_pairs(np.column_stack([pairs[:, 0], images]))
        cand, counts = np.unique(votes_key[:, 1], return_counts=True)
        votes_of = dict(zip(cand.tolist(), counts.tolist(), strict=True))
        order = [int(cand[k]) for k in np.lexsort((cand, -counts))]
        queue = [(i, True) for i in sorted(hinted, key=lambda i: (hinted[i], i))]
        if vote:
            queue += [(i, False) for i in order[: cfg.max_candidates] if i not in hinted]
        rejected: list[Rejection] = []
        fits: list[decide.CandidateFit] = []
        xy = qp.rows[:, :2]
        radius = decide.SHARED_RADIUS * max(qp.shape)
        known = region.points(qp.shape, qp.mirrored)
        shared = decide.near(xy, known, radius)  # (K,) query keypoints in the shared region
        for image, is_hint in queue:
            votes = votes_of.get(image, 0)
            if not is_hint and votes < cfg.min_votes:
                reason = _pass_reason(qp, f"{votes} votes < min_votes {cfg.min_votes}")
                rejected.append(Rejection(path_of(image), "local", reason, votes, search_pass=qp.name))
                break  # candidates come by votes: the rest have fewer
            mine = pairs[images == image]
            if not is_hint and shared.any():
                own_votes = len(np.unique(mine[~shared[mine[:, 0]], 0]))
                if own_votes < cfg.min_votes:
                    reason = (
                        f"{votes} votes, {own_votes} from outside a region other indexed pictures "
                        f"share < min_votes {cfg.min_votes}"
                    )
                    rejected.append(self._rejection(path_of(image), qp, reason, votes, None))
                    continue
            fit = self._fit(image, votes, qp, mine, cfg)
            if isinstance(fit, str):
                rejected.append(self._rejection(path_of(image), qp, fit, votes, hinted.get(image)))
                continue
            fits.append(fit)
            if cfg.min_own_inliers > 0:
                shared |= decide.shared_keypoints(fits, xy, radius, cfg.global_max_distance)
        region.add(xy[shared & ~decide.near(xy, known, radius)], qp.shape, qp.mirrored)
        matches = []
        verdicts = decide.decide(fits, qp.image, xy, qp.fill, cfg, known)
        for fit, verdict in zip(fits, verdicts, strict=True):
            if verdict.reason is not None:
                rejected.append(
                    self._rejection(
                        path_of(fit.image), qp, verdict.reason, fit.votes, hinted.get(fit.image), fit.inliers
                    )
                )
                continue
            matches.append(
                Match(
                    path_of(fit.image),
                    score=fit.inliers / (fit.inliers + 10.0),
                    tier="local",
                    distance=hinted.get(fit.image),
                    votes=fit.votes,
                    inliers=fit.inliers,
                    coverage=round(fit.coverage, 3),
                    agreement=verdict.agreement,
                    geometry=self._geometry(fit.model, fit.scale, qp, fit.image, fit.kind),
                    search_pass=qp.name,
                    searched_side=max(qp.shape),
                    image_id=fit.image,
                )
            )
        return matches, rejected

    @staticmethod
    def _rejection(
        path: str, qp: QueryPass, reason: str, votes: int, hint: int | None, inliers: int | None = None
    ) -> Rejection:
        """A local rejection, its reason prefixed by the global distance of a hint and by the pass."""
        prefix = f"global candidate at {hint} bits: " if hint is not None else ""
        return Rejection(
            path, "local", _pass_reason(qp, prefix + reason), votes, inliers, search_pass=qp.name
        )

    def _hash_pairs(self, qp: QueryPass, cfg: SearchConfig) -> np.ndarray:
        """All (query keypoint, indexed keypoint) pairs whose patch hashes are within the radius.

        ``hash_flips`` -1 probes one bit for passes with few hashes (:data:`FLIP_MAX_HASHES`); a full
        pass also probes the hashes of the keypoints the pass before it looked up as that pass did,
        so that it finds every pair that pass found.
        """
        scales = len(cfg.query_scales)
        rows = np.arange(len(qp.hashes))
        if qp.first is None:
            probes = [(rows, _flips(cfg, len(rows)))]
        else:  # qp.lookup holds every keypoint: hash row = keypoint * scales + scale
            first = (qp.first[:, None] * scales + np.arange(scales)).ravel()
            probes = [(rows, _flips(cfg, len(rows))), (first, _flips(cfg, len(first)))]
            if probes[1][1] <= probes[0][1]:  # fewer flips find a subset of what more flips find
                probes.pop()
        query_kp, indexed_kp = [], []
        for hash_rows, flips in probes:
            lims, _, ids = self.hashes.range_search(qp.hashes[hash_rows], cfg.patch_radius, flips=flips)
            query_kp.append(qp.lookup[np.repeat(hash_rows, np.diff(lims)) // scales])
            indexed_kp.append(self.keypoint_of(ids // self.scales_per_kp))
        return verify.unique_pairs(np.column_stack([np.concatenate(query_kp), np.concatenate(indexed_kp)]))

    # -- verification -------------------------------------------------------------------
    def _fit(
        self, image: int, votes: int, qp: QueryPass, hash_pairs: np.ndarray, cfg: SearchConfig
    ) -> decide.CandidateFit | str:
        """Fit a map to one candidate (:mod:`imgsearch.verify`); the fit, or why there is none."""
        stored = self.store.read_local(image, ("keypoints", "descriptors", "patch_hash"))
        rows, desc = stored["keypoints"], stored["descriptors"]
        lo = int(self.offsets[image])
        pairs = hash_pairs.copy()
        pairs[:, 1] -= lo
        pairs = verify.correspondences(pairs, qp.descriptors, desc, cfg.ratio, self.binary_descriptors)
        if len(pairs) < cfg.min_inliers:
            return f"{len(pairs)} correspondences < min_inliers {cfg.min_inliers}"
        q, r = qp.rows[pairs[:, 0]], rows[pairs[:, 1]]
        pairs = pairs[verify.consistent_angles(r[:, 3] - q[:, 3])]
        n_distinct = len(np.unique(pairs[:, 0]))
        if n_distinct < cfg.min_inliers:
            return f"{n_distinct} orientation-consistent correspondences < min_inliers {cfg.min_inliers}"
        fit = verify.fit_transform(qp.rows[:, :2], rows[:, :2], pairs, cfg)
        if isinstance(fit, str):
            return fit
        model, inlier_pairs, inliers, kind = fit
        # The scale test is on keypoint-image pixels, where copies of any size meet.
        scale = math.sqrt(abs(float(np.linalg.det(model[:, :2]))))
        if not SCALE_RANGE[0] <= scale <= SCALE_RANGE[1]:
            return f"implausible scale {scale:.3f} (RANSAC, {inliers} inliers)"
        if qp.zoomed and scale < ZOOM_MIN_SCALE:
            return f"scale {scale:.3f} < {ZOOM_MIN_SCALE}: not a copy too small at query_side ({inliers} inliers)"
        in_query, in_image = verify.coverage(qp.rows[:, :2], qp.hull_area, rows[:, :2], inlier_pairs)
        coverage = max(in_query, in_image)
        if coverage < cfg.min_coverage:
            return (
                f"{inliers} inliers cover {in_query:.0%} of the query and {in_image:.0%} of the image "
                f"< min_coverage {cfg.min_coverage:.0%} (a shared logo, watermark or text?)"
            )
        return decide.CandidateFit(
            image=image,
            votes=votes,
            model=model,
            kind=kind,
            inliers=inliers,
            inlier_pairs=inlier_pairs,
            pairs=pairs,
            coverage=coverage,
            scale=scale,
            rows=rows,
            descriptors=None if self.kconfig.descriptor != "patch" else desc,
            patch_hash=stored["patch_hash"][:, 0, :],
            hash_scale=self.kconfig.patch_scales[0],
            global_hash=self.global_hashes[image],
        )

    def _geometry(self, model: np.ndarray, scale: float, qp: QueryPass, image: int, kind: str) -> Geometry:
        """Rotation, scale, mirroring and footprint of the query in the indexed image's pixels.

        ``model`` maps query keypoint-image pixels to indexed ones (a similarity or, ``kind``
        "affine", any orientation-preserving affine map) and ``scale`` is the square root of its
        determinant; the rotation is that of the nearest rotation (polar decomposition; exact for
        a similarity).
        """
        h, w = qp.shape
        corners = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float64) - 0.5
        if qp.mirrored:  # corners of the original query, expressed in the mirrored pass's frame
            corners[:, 0] = (w - 1) - corners[:, 0]
        mapped = corners @ model[:, :2].T + model[:, 2]
        mapped = (mapped + 0.5) / float(self.kp_scale[image]) - 0.5
        rotation = math.degrees(math.atan2(model[1, 0] - model[0, 1], model[0, 0] + model[1, 1]))
        return Geometry(
            rotation=round(rotation, 2),
            scale=round(scale * qp.ratio / float(self.kp_scale[image]), 4),
            mirrored=qp.mirrored,
            footprint=tuple((round(float(x), 1), round(float(y), 1)) for x, y in mapped),
            model=kind,
        )


def _pass_of(
    kps: kp_mod.Keypoints,
    unit: np.ndarray | None,
    img: np.ndarray,
    lookup: np.ndarray | None,
    mirrored: bool,
    ratio: float,
    cfg: SearchConfig,
    zoomed: bool,
    full: bool,
    first: np.ndarray | None = None,
) -> QueryPass:
    """A pass of ``kps`` (detected in ``img``; ``unit`` their scale-1 patches or None) whose
    ``lookup`` rows (None: all) are hashed. A pass at query_side with fewer lookups than keypoints
    keeps them as its ``source``, for :meth:`LocalIndex.full_pass`; ``first`` is, for a full pass,
    the lookups of the pass it extends."""
    voters, voter_unit = kps, unit
    if lookup is not None:
        voters, voter_unit = kps.take(lookup), None if unit is None else unit[lookup]
    blocks = kp_mod.patches_at(img, voters, cfg.query_scales, voter_unit)
    keep = lookup is not None and not zoomed
    return QueryPass(
        keypoint_rows(kps),
        kps.descriptors,
        hashing.patch_hashes(blocks),
        mirrored,
        img.shape[:2],
        ratio,
        np.arange(len(kps)) if lookup is None else lookup,
        blocks,
        img,
        zoomed,
        full,
        source=(kps, unit) if keep else None,
        first=first,
    )


def _flips(cfg: SearchConfig, hashes: int) -> int:
    """Bits flipped per multi-index-hashing probe for ``hashes`` query hashes (``hash_flips``, or
    with -1: 1 for at most :data:`FLIP_MAX_HASHES`, else 0)."""
    return cfg.hash_flips if cfg.hash_flips >= 0 else int(hashes <= FLIP_MAX_HASHES)


def _pass_reason(qp: QueryPass, reason: str) -> str:
    """``reason`` prefixed with the pass that gave it: :data:`ZOOMED_PASS` or :data:`FULL_PASS`,
    then :data:`MIRRORED_PASS`."""
    prefix = ZOOMED_PASS if qp.zoomed else FULL_PASS if qp.full else ""
    return prefix + (MIRRORED_PASS if qp.mirrored else "") + reason
