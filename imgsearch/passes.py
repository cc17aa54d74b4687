"""The query's passes: its keypoints, described and hashed once, seen directly, mirrored, or all looking up.

A query is downscaled to ``SearchConfig.query_side`` (180 px; the indexed images to ``max_side``,
210); ``max(K, verify_keypoints)`` grid-spread keypoints are detected and described, and the
patches of K of them (grid-spread too) are hashed at the query scales: those are the pass's lookups.
A mirrored pass is derived from the direct one when the detector is mirror-equivariant (SIFT:
mirrored positions and angles, patches upside down, permuted descriptors), else detected again. A
full pass looks up every described keypoint, reusing the detection.

Coordinates: keypoint positions are ``(x, y)`` in the keypoint image's pixels (y down).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import agreement, hashing, verify
from . import keypoints as kp_mod
from .config import KeypointConfig, SearchConfig
from .extract import keypoint_rows
from .store import postings


@dataclass
class QueryPass:
    """One orientation of the query: its keypoints (rows as stored), descriptors, mirrored or not."""

    rows: np.ndarray  # (N, 5) float32 x, y, size, angle, response
    descriptors: np.ndarray
    hashes: np.ndarray  # (K * S, 8) uint8, lookup keypoint-major
    margins: np.ndarray  # (K * S, 64) float32: how sure each hash bit is (postings.bit_margins)
    mirrored: bool
    shape: tuple[int, int]
    ratio: float  # keypoint-image pixels per pixel of the query at full size
    lookup: np.ndarray  # (K,) rows of the keypoints whose patch hashes are looked up
    patches: np.ndarray  # (K * S, 32, 32) float32 patches behind ``hashes``
    image: np.ndarray  # (H, W) uint8: the keypoint image the keypoints were found in (mirrored or not)
    zoomed: bool = False  # a pass at SearchConfig.zoom_factor times query_side
    full: bool = False  # a pass at query_side looking up every described keypoint, whatever K
    # All the described keypoints and their scale-1 patches (None for native descriptors), kept by
    # a detected pass whose lookups are fewer, so that its full pass needs no second detection.
    source: tuple[kp_mod.Keypoints, np.ndarray | None] | None = None
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

    def lookup_geometry(self, scales: int) -> np.ndarray:
        """``(K * S,)`` uint8 :func:`imgsearch.store.postings.geometry_bins` of the lookup hashes."""
        rows = self.rows[self.lookup]
        return np.repeat(postings.geometry_bins(rows[:, 3], rows[:, 2]), scales)


def query_pass(
    small: np.ndarray, mirrored: bool, ratio: float, cfg: SearchConfig, kconfig: KeypointConfig, zoomed: bool = False
) -> QueryPass:
    """Detect the query's keypoints in its (mirrored) keypoint image and hash the lookup ones.

    ``max(K, verify_keypoints)`` grid-spread keypoints are detected and described once; the K
    lookup keypoints, a grid-spread subset, are hashed; all of them serve in verification.
    """
    img = np.ascontiguousarray(small[:, ::-1]) if mirrored else small
    kps, unit = kp_mod.detect_features(img, kconfig, max(cfg.keypoints, cfg.verify_keypoints))
    lookup = None  # all of them look up
    if len(kps) > cfg.keypoints:
        lookup = np.sort(kp_mod.select_spread(kps.xy, kps.response, img.shape[:2], kconfig.grid, cfg.keypoints))
    return _pass_of(kps, unit, img, lookup, mirrored, ratio, cfg, zoomed, full=False)


def full_pass(qp: QueryPass, small: np.ndarray, cfg: SearchConfig) -> QueryPass | None:
    """Pass ``qp`` again with every keypoint it described looking up (a full pass); ``None`` when
    it kept none (all of them looked up already, or a pass derived by mirroring: :func:`mirror_pass`
    of the direct full pass serves then)."""
    if qp.source is None:
        return None
    kps, unit = qp.source
    img = np.ascontiguousarray(small[:, ::-1]) if qp.mirrored else small
    return _pass_of(kps, unit, img, None, qp.mirrored, qp.ratio, cfg, False, True)


def mirror_pass(qp: QueryPass, small: np.ndarray, cfg: SearchConfig, kconfig: KeypointConfig) -> QueryPass:
    """The mirrored pass, derived from the direct one when the detector allows (SIFT), else detected.

    SIFT finds the mirrored keypoints in a mirrored image (:func:`imgsearch.keypoints.mirror_rows`),
    their patches are the direct ones upside down, and their descriptors a fixed permutation, so no
    second detection is needed.
    """
    desc = kp_mod.mirror_descriptors(kconfig, qp.descriptors)
    if desc is None:
        return query_pass(small, True, qp.ratio, cfg, kconfig, qp.zoomed)
    rows = qp.rows.copy()
    rows[:, :2], rows[:, 3] = kp_mod.mirror_rows(qp.rows[:, :2], qp.rows[:, 3], qp.shape[1])
    blocks = np.ascontiguousarray(qp.patches[:, ::-1, :])
    coeffs = hashing.dct_low(blocks)
    return QueryPass(
        rows,
        desc,
        hashing.threshold_bits(coeffs),
        postings.bit_margins(coeffs),
        True,
        qp.shape,
        qp.ratio,
        qp.lookup,
        blocks,
        np.ascontiguousarray(qp.image[:, ::-1]),
        qp.zoomed,
        qp.full,
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
) -> QueryPass:
    """A pass of ``kps`` (detected in ``img``; ``unit`` their scale-1 patches or None) whose
    ``lookup`` rows (None: all) are hashed. A pass at query_side with fewer lookups than keypoints
    keeps them as its ``source``, for :func:`full_pass`."""
    voters, voter_unit = kps, unit
    if lookup is not None:
        voters, voter_unit = kps.take(lookup), None if unit is None else unit[lookup]
    blocks = kp_mod.patches_at(img, voters, cfg.query_scales, voter_unit)
    coeffs = hashing.dct_low(blocks)
    keep = lookup is not None and not zoomed
    return QueryPass(
        keypoint_rows(kps),
        kps.descriptors,
        hashing.threshold_bits(coeffs),
        postings.bit_margins(coeffs),
        mirrored,
        img.shape[:2],
        ratio,
        np.arange(len(kps)) if lookup is None else lookup,
        blocks,
        img,
        zoomed,
        full,
        source=(kps, unit) if keep else None,
    )
