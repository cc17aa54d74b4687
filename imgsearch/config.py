"""Configuration as data: frozen dataclasses validated at construction, saved verbatim in an index.

:class:`IndexConfig` defines an index (what is extracted from each image and stored); changing it
means rebuilding. :class:`SearchConfig` holds query-time knobs; an index stores the defaults it was
built with, and every query may override them.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError

DETECTORS = ("sift", "orb", "brief")
DESCRIPTORS = ("patch", "native")
TIERS = ("exact", "global", "local")


def _check_range(owner: str, name: str, value: float, lo: float, hi: float) -> None:
    """``lo <= value <= hi``, and an integer (not a bool) when both bounds are integers."""
    integral = isinstance(lo, int) and isinstance(hi, int)
    kinds: tuple[type, ...] = (int,) if integral else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        kind = "an integer" if integral else "a number"
        raise ConfigError(f"{owner}.{name} must be {kind} in [{lo}, {hi}], got {value!r}")
    if not lo <= value <= hi:
        raise ConfigError(f"{owner}.{name} must be in [{lo}, {hi}], got {value!r}")


def _check_scales(owner: str, name: str, scales: tuple[float, ...]) -> None:
    if not scales or any(not 0.1 <= s <= 10.0 for s in scales):
        raise ConfigError(f"{owner}.{name} must be a non-empty tuple of scales in [0.1, 10], got {scales!r}")


@dataclass(frozen=True)
class GlobalConfig:
    """The global tier: one 64-bit perceptual hash per image.

    Attributes
    ----------
    hasher : str
        Name of the global hash; ``"phash"`` (DCT pHash) is the one implemented.
    """

    hasher: str = "phash"

    def __post_init__(self) -> None:
        if self.hasher != "phash":
            raise ConfigError(f"GlobalConfig.hasher must be 'phash', got {self.hasher!r}")


@dataclass(frozen=True)
class KeypointConfig:
    """The local tier: keypoints and patch hashes extracted from each indexed image.

    Attributes
    ----------
    detector : {"sift", "orb", "brief"}
        Keypoint detector. ``brief`` is BRIEF descriptors on FAST corners.
    descriptor : {"patch", "native"}
        What describes a keypoint for verification: ``"patch"`` is a SIFT-layout gradient histogram
        of its rotation-normalised patch (:mod:`imgsearch.descriptors`; any detector, 3-4x cheaper
        than OpenCV's SIFT descriptor with the same verification results), ``"native"`` the
        detector's own (SIFT 128 floats, ORB and BRIEF 256 bits).
    max_side : int
        Images are downscaled so that their long side is this many pixels before detection.
    budget : int
        J, the number of keypoints kept per indexed image (grid-spread selection).
    grid : int
        Cells along the long side of the selection grid (the short side gets proportionally fewer,
        at least one): keypoints are spread over ``grid × grid`` cells for a square image and
        ``1 × grid`` for an elongated one.
    patch_scales : tuple of float
        Each keypoint's patch side is ``size × s`` for each ``s``; indexed images store these scales.
    hashed : int or None
        How many of an image's J keypoints have their patch hashes in the in-RAM search structure
        (they cast the votes); all J are stored and serve in verification. Keypoints are stored in
        grid-spread order (:func:`imgsearch.keypoints.spread_order`), so these are spread over
        the image too. ``None``: all of them.
    contrast_floor : float
        SIFT only: keypoints of a contrast down to this (OpenCV's ``contrastThreshold`` scale) fill
        the budget when fewer than that reach :data:`imgsearch.keypoints.SIFT_CONTRAST` (0.01), as
        on a photo of an object on a plain background; 0.01 or more turns that off
        (``scripts/results/sweep_contrast_floor.json``).
    """

    detector: str = "sift"
    descriptor: str = "patch"
    max_side: int = 210
    budget: int = 400
    grid: int = 3
    patch_scales: tuple[float, ...] = (1.0,)
    hashed: int | None = 240
    contrast_floor: float = 0.005

    def __post_init__(self) -> None:
        if self.detector not in DETECTORS:
            raise ConfigError(f"KeypointConfig.detector must be one of {DETECTORS}, got {self.detector!r}")
        if self.descriptor not in DESCRIPTORS:
            raise ConfigError(
                f"KeypointConfig.descriptor must be one of {DESCRIPTORS}, got {self.descriptor!r}"
            )
        _check_range("KeypointConfig", "max_side", self.max_side, 64, 4096)
        _check_range("KeypointConfig", "budget", self.budget, 1, 100_000)
        _check_range("KeypointConfig", "grid", self.grid, 1, 16)
        object.__setattr__(self, "patch_scales", tuple(float(s) for s in self.patch_scales))
        _check_scales("KeypointConfig", "patch_scales", self.patch_scales)
        if self.hashed is not None:
            _check_range("KeypointConfig", "hashed", self.hashed, 1, 100_000)
        _check_range("KeypointConfig", "contrast_floor", self.contrast_floor, 0.0005, 0.1)


@dataclass(frozen=True)
class SearchConfig:
    """Query-time knobs; the defaults are those measured in ``scripts/results``.

    Attributes
    ----------
    tiers : tuple of str
        Tiers to run, fastest first, from ``("exact", "global", "local")``.
    global_max_distance : int
        The largest Hamming distance (of 64 bits) at which the global tier alone calls a copy.
    global_verify_distance : int
        Images within this distance but beyond ``global_max_distance`` are candidates the local
        tier verifies geometrically (when the index has one); a pHash alone is not proof there.
    query_side : int or None
        Long side (px) a query is downscaled to for the local tier; ``None`` is the index's
        ``max_side``. Indexed images keep every detail at ``max_side``; a query detected at a
        smaller size still meets them (SIFT is scale-invariant), and SIFT's cost grows faster
        than the area (``scripts/results/sweep_query_side.json``: 180 px is as good as 210 and
        cheaper, 150 px misses small photos in screenshots). Never larger than the query itself;
        a JPEG query is decoded at least this large.
    zoom_factor : float or None
        When the local tier finds no copy at ``query_side``, it searches once more with the query
        at this many times ``query_side`` (225 px), if the query is at least that large: a photo
        shrunk into a busy page, a collage or another photo is too small at ``query_side`` for its
        keypoints to meet the indexed ones (``scripts/stress_transforms.py``, ``paste``). The
        zoomed passes look up all ``verify_keypoints`` keypoints, whatever ``keypoints``, and
        accept a copy that shows larger than indexed only on strong evidence
        (:data:`imgsearch.local.ZOOM_MIN_SCALE`). Costs time only for queries that
        find no copy (a second detection: about 16 ms on one core at 225 px, 23 ms at 270);
        ``None`` turns it off. 1.25 rather than 1.5 (chosen on the tune half's stress set, 2,700
        copies over two seeds, and its hard negatives: 9 more copies found, mostly shears, 1 shelf
        false positive fewer in 7,000, new images 18 % cheaper; docs/results.md).
    keypoints : int
        K, the number of query keypoints whose patch hashes are looked up (they cast the votes) in
        the first passes. A query they do not find runs the full passes, where every described
        keypoint looks up, then the zoomed passes (:mod:`imgsearch.local`).
    verify_keypoints : int
        Query keypoints described for geometric verification (at least K are): a small K keeps
        lookups cheap while verification still sees enough of the query; all of them look up in
        the full and zoomed passes.
    query_scales : tuple of float
        Patch scales hashed for a query (around the indexed scales, to meet them).
    patch_radius : int
        Hamming radius of the patch-hash neighbour search.
    probes : int
        Buckets of the postings each lookup hash reads (:mod:`imgsearch.store.postings`): its own
        key and its keys with its least confident bits flipped, most likely first; at most 64
        (each probe costs a new image about as much as the next: 32 by default).
    consistent_votes : bool
        Count an image's votes within its best window of orientation and scale differences
        (:mod:`imgsearch.votes`), which keeps chance candidates few in large indexes.
    ratio : float
        Lowe ratio for descriptor matches, taken within each candidate image.
    max_candidates : int
        How many of the best-voted images are verified geometrically.
    min_votes : int
        Votes a candidate needs before it is verified; 0 (the default) grows slowly with the
        index: 2 up to 1,000 images, 5 at 32,000, 7 at a million (:func:`imgsearch.votes.votes_needed`),
        and the direct pass also fits the best-voted image below that floor with 2 votes or more,
        as weak evidence (:data:`imgsearch.local.SPARE_FITS`). A floor set here is strict.
    max_rivals : int
        Before a fitted candidate is called a copy, the images that a good share of its evidence
        also reached in the pass's lookups (15 % of the query keypoints that voted for it, or of
        its inlier keypoints, and at least 2: its rivals, :func:`imgsearch.local.rivals`) are
        fitted too, up to this many, whatever their votes: in a large index another render of a
        shared template or packaging can fall short of ``min_votes`` or of a place among
        ``max_candidates``, and only a fitted picture shows the verdict that a region is shared
        (``min_own_inliers``). Among a million images, new renders of the hard-negative designs
        matched another render of their design 52 times in 6,936 without it, 4 with it
        (docs/results.md); 1 of 126 local copies had a rival. 0 turns it off.
    min_inliers : int
        RANSAC inliers a candidate needs to be called a copy.
    min_coverage : float
        The convex hull of the inliers must cover at least this share of the query or of the
        indexed image (the larger counts): a copy shares a good part of one of them, while two
        distinct images that carry the same logo, watermark or caption share a small corner of both.
        0.05 by default, a floor far below any copy's: 165 true local matches of copies under 60
        transforms on the tuning photos covered 0.22 or more, while new images of a social-post
        template matched on one small icon at 0.002. Higher values stop more shared-overlay
        matches and cost copies (0.15 lost 3 of 1,860 in the evaluation).
    min_own_inliers : int
        Inliers a candidate needs that no candidate of another indexed picture explains: a region
        several pictures share (a logo, a watermark, packaging, a template) proves nothing about
        which one the query was made from (:mod:`imgsearch.decide`). 0 turns the test off.
    distinct_ratio : float
        An own inlier counts only when the candidate's keypoint matches its query keypoint better
        than this ratio (of descriptor distances) times any query keypoint elsewhere: inliers on a
        pattern the query repeats (the same brand face on every box of a shelf, a template's
        cells) do not tell which picture it was made from (:mod:`imgsearch.decide`). 0 turns the
        test off.
    global_agreement : float
        Agreement a global match needs to be confirmed (with ``min_agreement`` > 0 and a local
        tier): the pages of one web or social template lie within 4 bits of each other and agree
        on their shared chrome up to 0.71, copies the global tier found at 0.81 or more. A global
        match below it goes to the local tier.
    repeat_distance : float
        A candidate keypoint with another of its own stored keypoints elsewhere within this patch
        descriptor distance lies on a pattern the candidate repeats and is left out of the
        agreement test (it would agree with any repetition). 0 turns it off; used with patch
        descriptors only.
    min_agreement : float
        Share of the candidate's keypoints the aligned query shows, outside the shared region,
        that must agree with it when described again in the query: a copy agrees over its whole
        overlap with the original but under its overlays, an image sharing a part only on that
        part (:mod:`imgsearch.agreement`). Also confirms global matches. 0 turns the test off.
    ransac_threshold : float
        RANSAC reprojection threshold, in pixels of the downscaled (``max_side``) image.
    mirror : bool
        Also search the mirrored query in the local tier.
    zoom_mirrored : bool
        Also run the mirrored pass at the zoomed size. Off: on the stress set (1,200 copies, seed 0)
        it found none that the other passes missed and cost every new image 6-7 ms of its 42-55
        (15 %); the zoomed direct pass found 6 (pasted photos, a shear).
    """

    tiers: tuple[str, ...] = TIERS
    global_max_distance: int = 4
    global_verify_distance: int = 12
    query_side: int | None = 180
    zoom_factor: float | None = 1.25
    keypoints: int = 400
    verify_keypoints: int = 400
    query_scales: tuple[float, ...] = (1.0,)
    patch_radius: int = 8
    probes: int = 32
    consistent_votes: bool = True
    ratio: float = 0.8
    max_candidates: int = 20
    min_votes: int = 0
    max_rivals: int = 8
    min_inliers: int = 8
    min_coverage: float = 0.05
    min_own_inliers: int = 8
    distinct_ratio: float = 0.8
    repeat_distance: float = 70.0
    global_agreement: float = 0.75
    min_agreement: float = 0.4
    ransac_threshold: float = 4.0
    mirror: bool = True
    zoom_mirrored: bool = False

    def __post_init__(self) -> None:
        given = tuple(self.tiers)
        bad = [t for t in given if t not in TIERS]
        if len(set(given)) != len(given):
            raise ConfigError(f"SearchConfig.tiers repeats a tier: {given!r}")
        object.__setattr__(self, "tiers", tuple(t for t in TIERS if t in given))  # fastest first
        if bad or not self.tiers:
            raise ConfigError(f"SearchConfig.tiers must be a non-empty subset of {TIERS}, got {given!r}")
        _check_range("SearchConfig", "global_max_distance", self.global_max_distance, 0, 32)
        _check_range(
            "SearchConfig",
            "global_verify_distance",
            self.global_verify_distance,
            self.global_max_distance,
            32,
        )
        if self.query_side is not None:
            _check_range("SearchConfig", "query_side", self.query_side, 64, 4096)
        if self.zoom_factor is not None:
            _check_range("SearchConfig", "zoom_factor", self.zoom_factor, 1.25, 8.0)
        _check_range("SearchConfig", "keypoints", self.keypoints, 1, 100_000)
        _check_range("SearchConfig", "verify_keypoints", self.verify_keypoints, 0, 100_000)
        object.__setattr__(self, "query_scales", tuple(float(s) for s in self.query_scales))
        _check_scales("SearchConfig", "query_scales", self.query_scales)
        _check_range("SearchConfig", "patch_radius", self.patch_radius, 0, 32)
        _check_range("SearchConfig", "probes", self.probes, 1, 64)  # postings.PROBE_MASKS
        _check_range("SearchConfig", "ratio", self.ratio, 0.0, 1.0)
        _check_range("SearchConfig", "max_candidates", self.max_candidates, 1, 10_000)
        _check_range("SearchConfig", "min_votes", self.min_votes, 0, 100_000)
        _check_range("SearchConfig", "max_rivals", self.max_rivals, 0, 10_000)
        _check_range("SearchConfig", "min_inliers", self.min_inliers, 3, 100_000)
        _check_range("SearchConfig", "ransac_threshold", self.ransac_threshold, 0.1, 100.0)
        _check_range("SearchConfig", "min_coverage", self.min_coverage, 0.0, 1.0)
        _check_range("SearchConfig", "min_own_inliers", self.min_own_inliers, 0, 100_000)
        _check_range("SearchConfig", "min_agreement", self.min_agreement, 0.0, 1.0)
        _check_range("SearchConfig", "distinct_ratio", self.distinct_ratio, 0.0, 1.0)
        _check_range("SearchConfig", "repeat_distance", self.repeat_distance, 0.0, 1000.0)
        _check_range("SearchConfig", "global_agreement", self.global_agreement, 0.0, 1.0)

    def replace(self, **changes: Any) -> SearchConfig:
        """A copy with ``changes`` applied (validated); unknown names and values of the wrong type
        raise :class:`ConfigError`."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ConfigError(f"unknown SearchConfig fields {sorted(unknown)}")
        try:  # a value of another type (a scalar for a tuple field) fails inside __post_init__
            return dataclasses.replace(self, **changes)
        except TypeError as exc:
            raise ConfigError(f"SearchConfig: a setting has the wrong type ({exc})") from None


@dataclass(frozen=True)
class IndexConfig:
    """What defines an index; stored verbatim (as JSON) in the index file and checked on open.

    Attributes
    ----------
    global_ : GlobalConfig
        The global-hash tier (always on).
    keypoints : KeypointConfig or None
        The local tier; ``None`` builds an index with the exact and global tiers only.
    search : SearchConfig
        Default query-time settings of this index.
    """

    global_: GlobalConfig = field(default_factory=GlobalConfig)
    keypoints: KeypointConfig | None = field(default_factory=KeypointConfig)
    search: SearchConfig = field(default_factory=SearchConfig)

    @property
    def decode_side(self) -> int:
        """Long side (px) images must be decoded at, at least, for this index's extractors."""
        return self.keypoints.max_side if self.keypoints is not None else 64

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IndexConfig:
        """Rebuild from :meth:`to_dict` output; unknown or missing keys raise :class:`ConfigError`,
        except that the search part may lack fields a later version added: they take their defaults
        (search settings change nothing stored, and a query may override any of them)."""
        expected = {
            "global_": GlobalConfig,
            "keypoints": KeypointConfig,
            "search": SearchConfig,
        }
        for key, kind in expected.items():
            part = data.get(key)
            if part is None and key == "keypoints":
                continue
            names = {f.name for f in dataclasses.fields(kind)}
            fits = isinstance(part, dict) and (set(part) <= names if kind is SearchConfig else set(part) == names)
            if not fits:
                got = sorted(part) if isinstance(part, dict) else part
                raise ConfigError(
                    f"stored {key} configuration has fields {got}, this imgsearch expects {sorted(names)}; "
                    "rebuild the index with this version"
                )
        try:
            kp = data.get("keypoints")
            return cls(
                global_=GlobalConfig(**data["global_"]),
                keypoints=None if kp is None else KeypointConfig(**kp),
                search=SearchConfig(**data["search"]),
            )
        except TypeError as exc:  # a field of the wrong type (the field sets were checked above)
            raise ConfigError(f"invalid index configuration {data!r}: {exc}") from exc

    @classmethod
    def from_json(cls, text: str) -> IndexConfig:
        return cls.from_dict(json.loads(text))
