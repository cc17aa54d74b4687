"""The local tier: patch-hash votes, then geometric verification and the verdict of the best-voted.

The passes of a query (:mod:`imgsearch.passes`) run in the order of
:data:`imgsearch.results.LOCAL_PASSES` and stop at the first that finds a copy: direct, mirrored,
then, when K keypoints looked up and more were described, the full passes, which look them all up;
then, if the query is large enough, the direct and mirrored passes again on the query at
``zoom_factor`` times ``query_side`` (the zoomed passes: a photo shrunk into a page or another photo
is too small at 180 px), looking up all the keypoints they describe and accepting a copy that shows
larger than indexed only on strong evidence (:data:`ZOOM_MIN_SCALE`).

In a pass, the lookup hashes probe every segment's postings (:meth:`IndexReader.patch_hits`); each
lookup keypoint votes at most once per image, counted within the image's best window of orientation
and scale differences (:mod:`imgsearch.votes`). The images with at least ``min_votes`` (by default
growing slowly with the index, :func:`imgsearch.votes.votes_needed`), at most ``max_candidates`` of
them, and the global tier's candidates (``hints``) are fitted one by one (:mod:`imgsearch.verify`) on
their own stored keypoints: the pairs of patch hashes within ``patch_radius`` and the descriptor
matches that pass the ratio test within the candidate; then :mod:`imgsearch.decide` judges whether
each fitted candidate is the query's original or shares a part with it. Before one is accepted, its
rivals are fitted too (``max_rivals``): the images that a good share of the query keypoints that
voted for it, or of its inlier keypoints, also reached, whatever their votes, so that a region
other pictures share is seen as shared however large the index.

Coordinates: keypoint positions are ``(x, y)`` in the keypoint image's pixels (y down). The
transform maps query keypoint-image pixels to indexed keypoint-image pixels; footprints are reported
in the indexed image's original pixels.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

import cv2
import numpy as np

from . import agreement, decide, hashing, verify, votes
from . import passes as ps
from .arrays import count_distinct, distinct
from .config import IndexConfig, SearchConfig
from .keypoints import descriptor_kind, downscale, mirror_equivariant
from .passes import QueryPass
from .results import FULL_PASS, MIRRORED_PASS, ZOOMED_PASS, Geometry, Match, Rejection
from .store import postings, scan
from .store.reader import IndexReader

SCALE_RANGE = (1 / 12, 12.0)  # plausible indexed/query scale of a copy, in keypoint-image pixels
# The zoomed pass is for copies too small in the query at query_side: zoomed, they still show
# smaller than indexed (scale above 1). Measured: photos pasted into another photo matched there at
# 2.2-4.1, while distinct photos sharing a caption matched on it at 0.76-0.93 (the caption is as
# large in both), so a zoomed match below 1 is refused: 20 % caption shared by 300 indexed and 149
# queried photos (scripts/shared_overlay.py), 65 false positives without the zoomed pass, 113 with
# it, 66 with it and this test (before imgsearch.decide). Unless its evidence is strong (decide:
# CandidateFit.needs_strong): a copy sheared by 0.25-0.4 is found only zoomed, the whole photo in
# a larger canvas, at 0.93-1.0 on 135-189 inliers (stress set, tuning photos); without the scale
# test, the one hard negative it let through (designs 0-10, 11,000 new images) matched on 13.
ZOOM_MIN_SCALE = 1.0
# Global matches are confirmed on this many of the image's stored keypoints (the first ones, spread
# over the image): about 0.3 ms on one core (32 would be as fast: the cost is mostly fixed).
CONFIRM_KEYPOINTS = 48
# A query decoded up to this many times the side of the image's keypoint image is not resized for
# the confirmation: its patches are cut from it where the stored keypoints fall, scaled (a JPEG
# decoded at a reduced size is 1-2 times max_side; resizing it cost 0.12 ms of the 0.55).
CONFIRM_MAX_RATIO = 2.0
# ... and only when it is scaled alike on both axes, to within this share (decoding and rounding
# leave under 1 %): a patch cut square from a stretched query is not the square the image stored.
CONFIRM_MAX_ANISOTROPY = 0.02
# Before a candidate is accepted, the images that reached a good share of its evidence (this share
# of the query keypoints that voted for it, or of its inlier keypoints, and at least this many) are
# fitted too (its rivals), whatever their votes: in a large index, another render of a shared
# template can be short of the vote floor or of a place among max_candidates, and unfitted it cannot
# show the verdict that the template is shared (decide.shared_keypoints). A share, not a count: a
# copy's hundred voters reach a few chance images three times each.
RIVAL_SHARE = 0.15
RIVAL_MIN_KEYPOINTS = 2
RIVAL = "rival of an accepted candidate: "
# A global match whose keypoints other indexed pictures partly share (a page template's chrome)
# must agree on at least this many of the rest, its own, to be confirmed.
GLOBAL_MIN_OWN = 4
# The automatic vote floor grows with the index (votes.votes_needed: 7 at a million) so that few
# chance images are fitted; the best-voted image below it (votes.best_below: votes counted
# exactly), with at least the floor of a small index (2), is fitted too in the direct pass (a
# spare; SPARE_FITS 0: none): bench_scale.py's heavy crops that a 1,000-image index finds reach 4-5
# votes at a million, the best-voted below the floor in the direct pass. Not in the fallback passes,
# which a new image runs after the direct one found nothing: a spare in each would multiply its
# chances to match by chance, and its fits (a mirrored shelf render matched that way among a
# million). Its few votes are weak evidence: the verdict asks of it the agreement of a weak fit
# (decide.CandidateFit.below_floor). A small index fits up to max_candidates images of 2 votes.
SPARE_FITS = 1
SPARE_PASS = "direct"


class LocalIndex:
    """The local tier over an :class:`~imgsearch.store.reader.IndexReader`'s segments."""

    def __init__(self, reader: IndexReader, config: IndexConfig) -> None:
        if config.keypoints is None:
            raise ValueError("LocalIndex needs an index configured with keypoints")
        self.reader = reader
        self.kconfig = config.keypoints
        self.binary_descriptors = descriptor_kind(self.kconfig) == "binary"
        # The mirrored passes derive from the direct ones (SIFT), else are detected (ORB, BRIEF).
        self._mirror_derived = mirror_equivariant(self.kconfig)
        self.scales_per_kp = len(self.kconfig.patch_scales)

    def confirm_global(
        self, gray: np.ndarray, image: int, variant: str, others: Sequence[int] = ()
    ) -> tuple[float, float | None]:
        """Agreement (:mod:`imgsearch.agreement`) of a query whose global hash matched ``image``
        through ``variant`` (a :data:`imgsearch.hashing.VARIANT_NAMES` name): the ``(H, W)`` uint8
        query is turned by that variant (negated for an inverted one) and brought to the scale of
        the image's keypoint image (:func:`_to_keypoint_image`), and its first
        :data:`CONFIRM_KEYPOINTS` stored keypoints (spread over it) are described there again.

        Returns ``(share, own)``: the share of those keypoints that agree, and, when some of them
        are shared with ``others`` (ids of indexed pictures the global tier aligned with the query
        through the same variant, not the same picture as ``image``:
        :func:`imgsearch.decide.shared_elsewhere`), the share of the rest that agree (0 when fewer
        than :data:`GLOBAL_MIN_OWN` of the rest can be judged); else None. Patch descriptors only.
        """
        name = variant.removeprefix("inverted ")
        aligned = hashing.apply_dihedral(gray, name)
        if name != variant:
            aligned = 255 - aligned
        size = self._keypoint_size(image)
        aligned, to_image = _to_keypoint_image(aligned, size)
        # All its keypoints (reading them costs what reading the first does: the image's CRC-32
        # covers them all); the first CONFIRM_KEYPOINTS are judged, its own ones if others share.
        every = self.reader.read_local(image, ("keypoints", "descriptors", "patch_hash"))
        patch = self.kconfig.descriptor == "patch"

        def judged(rows: np.ndarray) -> agreement.Agreement:
            return agreement.agreement(
                aligned,
                None,  # the whole image, turned and scaled: no padding to look for
                every["keypoints"][rows],
                to_image,
                every["descriptors"][rows] if patch else None,
                every["patch_hash"][rows, 0, :],
                self.kconfig.patch_scales[0],
            )

        first = np.arange(min(CONFIRM_KEYPOINTS, len(every["keypoints"])))
        share = judged(first).fraction()
        if not others or not patch:
            return share, None
        theirs = []
        for other in others:
            o = self.reader.read_local(other, ("keypoints", "descriptors"))
            theirs.append((o["keypoints"], o["descriptors"], self._keypoint_size(other)))
        shared = decide.shared_elsewhere(every["keypoints"], every["descriptors"], size, theirs)
        if not shared[first].any():
            return share, None
        mine = judged(np.flatnonzero(~shared)[:CONFIRM_KEYPOINTS])
        seen = mine.count(agreement.AGREE) + mine.count(agreement.DISAGREE)
        return share, mine.fraction() if seen >= GLOBAL_MIN_OWN else 0.0

    def _keypoint_size(self, image: int) -> tuple[int, int]:
        """``(w, h)`` of an indexed image's keypoint image."""
        scale = float(self.reader.value("kp_scale", image))
        return (
            max(1, round(float(self.reader.value("width", image)) * scale)),
            max(1, round(float(self.reader.value("height", image)) * scale)),
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
        timings: dict[str, float] | None = None,
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
        object to every call for one query. ``timings`` receives the milliseconds of each pass (a
        pass's detection counts in it), under its name.
        """
        region = decide.SharedRegion() if region is None else region
        if self.reader.rows == 0:
            reason = "the index holds no keypoints to verify against"
            passes = {False: "direct", True: "mirrored"}
            return [], [
                Rejection(
                    path_of(i), "local", f"global candidate at {d} bits: {reason}", search_pass=passes[r]
                )
                for i, r, d in hints
            ]
        clock = _Clock(timings)
        small, ratio = downscale(gray, side or cfg.query_side or self.kconfig.max_side)
        if full_side is not None:
            ratio *= max(gray.shape) / max(full_side, max(gray.shape))
        direct = ps.query_pass(small, False, ratio, cfg, self.kconfig, zoomed)
        hinted = {False: {i: d for i, r, d in hints if not r}, True: {i: d for i, r, d in hints if r}}
        matches, rejected = self._search_pass(direct, cfg, path_of, hinted[False], region)
        clock.lap(direct.name)
        if matches:
            return matches, rejected
        mirrored = None
        if cfg.mirror or hinted[True]:
            # With mirror off, the mirrored pass only verifies the global tier's reflected candidates.
            mirrored = ps.mirror_pass(direct, small, cfg, self.kconfig)
            matches, rej = self._search_pass(mirrored, cfg, path_of, hinted[True], region, vote=cfg.mirror)
            clock.lap(mirrored.name)
            rejected += rej
            if matches:
                return matches, rejected
        full = ps.full_pass(direct, small, cfg)  # None when every keypoint looked up already
        if full is not None:
            matches, rej = self._search_pass(full, cfg, path_of, {}, region)
            clock.lap(full.name)
            rejected += rej
            if matches:
                return matches, rejected
        if not cfg.mirror or mirrored is None:
            return matches, rejected
        # The mirrored detection's own (ORB, BRIEF), or derived from the direct full pass (SIFT).
        full_mirrored = ps.full_pass(mirrored, small, cfg)
        if full_mirrored is None and full is not None and self._mirror_derived:
            full_mirrored = ps.mirror_pass(full, small, cfg, self.kconfig)
        if full_mirrored is None:
            return matches, rejected
        matches, rej = self._search_pass(full_mirrored, cfg, path_of, {}, region)
        clock.lap(full_mirrored.name)
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
        hinted_ids = np.fromiter(hinted, np.int64, len(hinted))
        hit_kp, hit_image, (cand, counts), spare = self._hits(qp, cfg, hinted_ids)
        # Most votes first, ties to the lower id; only the first max_candidates and the hinted
        # images are looked at (a pass at a million images gives votes to tens of thousands).
        best = np.lexsort((cand, -counts))[: cfg.max_candidates]
        hinted_at = np.flatnonzero(np.isin(cand, hinted_ids))
        votes_of = dict(zip(cand[hinted_at].tolist(), counts[hinted_at].tolist(), strict=True))
        votes_of.update(zip(cand[best].tolist(), counts[best].tolist(), strict=True))
        queue = [(i, True) for i in sorted(hinted, key=lambda i: (hinted[i], i))]
        if vote:
            queue += [(i, False) for i in cand[best].tolist() if i not in hinted]
        min_votes = cfg.min_votes or votes.votes_needed(len(self.reader))
        rejected: list[Rejection] = []
        fits: list[decide.CandidateFit] = []
        xy = qp.rows[:, :2]
        radius = decide.SHARED_RADIUS * max(qp.shape)
        known = region.points(qp.shape, qp.mirrored)
        shared = decide.near(xy, known, radius)  # (K,) query keypoints in the shared region
        attempted: set[int] = set()  # images fitted (or whose fit failed)
        for image, is_hint in queue:
            n_votes = votes_of.get(image, 0)
            needed = min_votes
            below_floor = not is_hint and n_votes < min_votes
            if below_floor:
                if spare is None:
                    reason = _pass_reason(qp, f"{n_votes} votes < min_votes {min_votes}")
                    rejected.append(Rejection(path_of(image), "local", reason, n_votes, search_pass=qp.name))
                    break  # candidates come by votes: the rest have fewer
                (image, n_votes), spare = spare, None  # in place of the first below the floor
                needed = votes.votes_needed(0)
            if not is_hint and shared.any():
                mine = hit_kp[hit_image == image]
                own_votes = count_distinct(mine[~shared[mine]])
                if own_votes < needed:
                    what = f"min_votes {needed}" if not below_floor else f"{needed} (a spare below min_votes {min_votes})"
                    reason = (
                        f"{n_votes} votes, {own_votes} from outside a region other indexed pictures "
                        f"share < {what}"
                    )
                    rejected.append(self._rejection(path_of(image), qp, reason, n_votes, None))
                    continue
            attempted.add(image)
            fit = self._fit(image, n_votes, qp, cfg)
            if isinstance(fit, str):
                why = f"a spare below min_votes {min_votes}: {fit}" if below_floor else fit
                rejected.append(self._rejection(path_of(image), qp, why, n_votes, hinted.get(image)))
                continue
            fit.below_floor = min_votes if below_floor else 0
            fits.append(fit)
            if cfg.min_own_inliers > 0:
                shared |= decide.shared_keypoints(fits, xy, radius, cfg.global_max_distance)
        verdicts = decide.decide(fits, qp.image, xy, lambda: qp.fill, cfg, known, qp.descriptors)
        rival_fits = self._fit_rivals(
            qp, cfg, path_of, fits, verdicts, (hit_kp, hit_image), attempted, rejected
        )
        if rival_fits:
            fits += rival_fits
            shared |= decide.shared_keypoints(fits, xy, radius, cfg.global_max_distance)
            verdicts = decide.decide(fits, qp.image, xy, lambda: qp.fill, cfg, known, qp.descriptors)
        region.add(xy[shared & ~decide.near(xy, known, radius)], qp.shape, qp.mirrored)
        matches = []
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

    def _fit_rivals(
        self,
        qp: QueryPass,
        cfg: SearchConfig,
        path_of: Callable[[int], str],
        fits: list[decide.CandidateFit],
        verdicts: list[decide.Verdict],
        hits: tuple[np.ndarray, np.ndarray],
        attempted: set[int],
        rejected: list[Rejection],
    ) -> list[decide.CandidateFit]:
        """Fits of the :func:`rivals` of the ``fits`` the ``verdicts`` accept (none when none is
        accepted): in a large index they may be short of votes or of a place among the candidates,
        and unfitted they cannot show the verdict that a region is shared. Rivals that do not fit
        are added to ``rejected``, saying so."""
        if cfg.min_own_inliers <= 0 or cfg.max_rivals <= 0:
            return []
        accepted = [f for f, v in zip(fits, verdicts, strict=True) if v.reason is None]
        if not accepted:
            return []
        found = []
        for image, reached in rivals(accepted, *hits, attempted, cfg.max_rivals):
            fit = self._fit(image, reached, qp, cfg)
            if isinstance(fit, str):
                reason = f"{RIVAL}{reached} of its voting or inlier keypoints reach this image; {fit}"
                rejected.append(self._rejection(path_of(image), qp, reason, reached, None))
                continue
            found.append(fit)
        return found

    @staticmethod
    def _rejection(
        path: str, qp: QueryPass, reason: str, votes: int, hint: int | None, inliers: int | None = None
    ) -> Rejection:
        """A local rejection, its reason prefixed by the global distance of a hint and by the pass."""
        prefix = f"global candidate at {hint} bits: " if hint is not None else ""
        return Rejection(
            path, "local", _pass_reason(qp, prefix + reason), votes, inliers, search_pass=qp.name
        )

    def _hits(
        self, qp: QueryPass, cfg: SearchConfig, hinted: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray], tuple[int, int] | None]:
        """Probe the postings with the pass's lookup hashes: the lookup keypoint (row of
        ``qp.rows``) and image id of every hit, the votes per image (:func:`imgsearch.votes.count`),
        and the pass's spare ``(image, votes)`` (:data:`SPARE_FITS`), or None."""
        scales = len(cfg.query_scales)
        q, image, geometry = self.reader.patch_hits(
            postings.codes_of(qp.hashes), qp.margins, cfg.patch_radius, cfg.probes
        )
        kp = qp.lookup[q // scales]
        query_geometry = qp.lookup_geometry(scales)[q]
        floor = cfg.min_votes or votes.votes_needed(len(self.reader))
        counted = votes.count(kp, image, geometry, query_geometry, cfg.consistent_votes, floor, hinted)
        least = votes.votes_needed(0)
        spare = None
        # A floor the user sets stays strict.
        if SPARE_FITS and qp.name == SPARE_PASS and cfg.min_votes == 0 and floor > least:
            spare = votes.best_below(
                kp, image, geometry, query_geometry, cfg.consistent_votes, counted, floor, least, hinted
            )
        return kp, image, counted, spare

    # -- verification -------------------------------------------------------------------
    def _fit(
        self, image: int, n_votes: int, qp: QueryPass, cfg: SearchConfig, pairs: np.ndarray | None = None
    ) -> decide.CandidateFit | str:
        """Fit a map to one candidate (:mod:`imgsearch.verify`); the fit, or why there is none.

        ``pairs`` are its (query keypoint, stored keypoint) pairs of patch hashes, by default
        :func:`hash_pairs` of the pass and its stored hashes."""
        stored = self.reader.read_local(image, ("keypoints", "descriptors", "patch_hash"))
        rows, desc = stored["keypoints"], stored["descriptors"]
        if pairs is None:
            pairs = hash_pairs(qp, stored["patch_hash"], cfg.patch_radius)
        pairs = verify.correspondences(pairs, qp.descriptors, desc, cfg.ratio, self.binary_descriptors)
        if len(pairs) < cfg.min_inliers:
            return f"{len(pairs)} correspondences < min_inliers {cfg.min_inliers}"
        q, r = qp.rows[pairs[:, 0]], rows[pairs[:, 1]]
        pairs = pairs[verify.consistent_angles(r[:, 3] - q[:, 3])]
        n_distinct = count_distinct(pairs[:, 0])
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
        needs_strong = None
        if qp.zoomed and scale < ZOOM_MIN_SCALE:
            needs_strong = f"at scale {scale:.3f} < {ZOOM_MIN_SCALE} (not a copy too small at query_side)"
        in_query, in_image = verify.coverage(qp.rows[:, :2], qp.hull_area, rows[:, :2], inlier_pairs)
        coverage = max(in_query, in_image)
        # A fit short of min_coverage, or too large for the zoomed pass on weak evidence, is
        # refused by decide.decide, not here: its inliers still show the other candidates which
        # region of the query several pictures share.
        return decide.CandidateFit(
            image=image,
            votes=n_votes,
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
            global_hash=self.reader.value("global_hash", image),
            matched=desc,
            binary=self.binary_descriptors,
            covers=(in_query, in_image),
            needs_strong=needs_strong,
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
        kp_scale = float(self.reader.value("kp_scale", image))
        mapped = (mapped + 0.5) / kp_scale - 0.5
        rotation = math.degrees(math.atan2(model[1, 0] - model[0, 1], model[0, 0] + model[1, 1]))
        return Geometry(
            rotation=round(rotation, 2),
            scale=round(scale * qp.ratio / kp_scale, 4),
            mirrored=qp.mirrored,
            footprint=tuple((round(float(x), 1), round(float(y), 1)) for x, y in mapped),
            model=kind,
        )


class _Clock:
    """Milliseconds since the last lap, added to ``timings[name]`` (nothing when ``timings`` is None)."""

    def __init__(self, timings: dict[str, float] | None) -> None:
        self.timings = timings
        self.last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        if self.timings is not None:
            self.timings[name] = self.timings.get(name, 0.0) + (now - self.last) * 1e3
        self.last = now


def rivals(
    accepted: Sequence[decide.CandidateFit],
    hit_kp: np.ndarray,
    hit_image: np.ndarray,
    attempted: set[int],
    limit: int,
) -> list[tuple[int, int]]:
    """``(image id, keypoints reached)`` of the images not ``attempted`` that reached a good share
    of the evidence of one ``accepted`` fit: of the query keypoints whose hashes voted for it, or
    of its inlier keypoints, at least :data:`RIVAL_SHARE` of either (and
    :data:`RIVAL_MIN_KEYPOINTS`) also reached the image in the pass's hits (``hit_kp``,
    ``hit_image``, as :meth:`LocalIndex._hits`). Most reached first (ties to the lower id), at
    most ``limit``."""
    found: dict[int, int] = {}
    for fit in accepted:
        voters = distinct(hit_kp[hit_image == fit.image])
        for keypoints in (voters, distinct(fit.inlier_pairs[:, 0])):
            floor = max(RIVAL_MIN_KEYPOINTS, math.ceil(RIVAL_SHARE * len(keypoints)))
            # np.isin(hit_kp, keypoints) by a table over the query's keypoint rows (isin sorts).
            table = np.zeros(max(int(hit_kp.max(initial=-1)), int(keypoints.max(initial=-1))) + 1, bool)
            table[keypoints] = True
            reached = table[hit_kp]
            images, n = votes.keypoints_per_image(hit_kp[reached], hit_image[reached])
            for image, k in zip(images[n >= floor].tolist(), n[n >= floor].tolist(), strict=True):
                if image not in attempted:
                    found[image] = max(found.get(image, 0), k)
    return sorted(found.items(), key=lambda item: (-item[1], item[0]))[:limit]


def hash_pairs(qp: QueryPass, stored: np.ndarray, radius: int) -> np.ndarray:
    """``(P, 2)`` int64 (query keypoint row, stored keypoint row) of the pass's lookup hashes and a
    candidate's stored ``(J, S, 8)`` patch hashes within ``radius`` bits, sorted and distinct."""
    q = postings.codes_of(qp.hashes)
    s = postings.codes_of(stored.reshape(-1, 8))
    if len(q) == 0 or len(s) == 0:
        return np.zeros((0, 2), np.int64)
    qi, si = scan.pairs_within(q, s, radius)
    q_scales = len(qp.hashes) // len(qp.lookup)
    pairs = np.column_stack([qp.lookup[qi // q_scales], si // stored.shape[1]])
    return verify.unique_pairs(pairs)


def _to_keypoint_image(gray: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """A ``(H, W)`` query aligned with an indexed image, and the ``(2, 3)`` map from its pixels to
    that image's keypoint image of ``size`` ``(w, h)``: when it is 1 to :data:`CONFIRM_MAX_RATIO`
    times as large on both axes, alike to :data:`CONFIRM_MAX_ANISOTROPY`, itself and the scaling
    (pixel centres on pixel centres, as ``cv2.resize`` places them); else resized to ``size``
    (area-averaged when shrunk), and the identity."""
    h, w = gray.shape
    sx, sy = size[0] / w, size[1] / h
    alike = abs(sx / sy - 1.0) <= CONFIRM_MAX_ANISOTROPY
    if alike and 1.0 / CONFIRM_MAX_RATIO <= sx <= 1.0 and 1.0 / CONFIRM_MAX_RATIO <= sy <= 1.0:
        return gray, np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5]])
    shrink = size[0] * size[1] < w * h
    resized = cv2.resize(
        np.ascontiguousarray(gray), size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    )
    return resized, np.eye(2, 3)


def _pass_reason(qp: QueryPass, reason: str) -> str:
    """``reason`` prefixed with the pass that gave it: :data:`ZOOMED_PASS` or :data:`FULL_PASS`,
    then :data:`MIRRORED_PASS`."""
    prefix = ZOOMED_PASS if qp.zoomed else FULL_PASS if qp.full else ""
    return prefix + (MIRRORED_PASS if qp.mirrored else "") + reason
