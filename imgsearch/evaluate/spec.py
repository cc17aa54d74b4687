"""What an evaluation run is given: its configuration and its queries (the bottom of
:mod:`imgsearch.evaluate`, imported by the protocol, the results and the plots)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..config import TIERS, KeypointConfig, SearchConfig
from ..errors import ConfigError
from .transforms import get_transforms

QUERY_JPEG_QUALITY = 95
PROBE_MAX_DISTANCE = 32
"""Hamming radius of the score probe (the largest the global tier accepts)."""


@dataclass(frozen=True)
class EvalConfig:
    """What an evaluation run does; validated at construction.

    Attributes
    ----------
    folder : Path
        Images to evaluate on (walked recursively).
    distractor_fraction : float
        Fraction of the images, in [0, 1), never indexed and queried as distractors.
    per_transform : int
        Indexed images sampled as originals; each is queried under every transform.
    transforms : tuple of str
        Names from :data:`~imgsearch.evaluate.transforms.TRANSFORMS`; ``None`` means all.
    js, ks : tuple of int
        J values (keypoints per indexed image, one index each) and K values (keypoints per query).
    seed : int
        Seeds the split, the sample and every transform.
    tiers : tuple of str
        Search tiers, a subset of ``("exact", "global", "local")``.
    workers : int or None
        Worker processes for indexing (``None``: all cores).
    top : int
        Matches kept per query (the predictions pooled by µAP).
    search : dict
        :class:`~imgsearch.config.SearchConfig` fields set for every query (``keypoints`` and
        ``tiers`` come from ``ks`` and ``tiers``), e.g. ``{"query_side": 150}`` to measure a setting.
    keypoints : dict
        :class:`~imgsearch.config.KeypointConfig` fields set for every index built (``budget``
        comes from ``js``), e.g. ``{"hashed": 200}``.
    """

    folder: Path
    distractor_fraction: float = 0.15
    per_transform: int = 20
    transforms: tuple[str, ...] | None = None
    js: tuple[int, ...] = (KeypointConfig().budget,)
    ks: tuple[int, ...] = (SearchConfig().keypoints,)
    seed: int = 0
    tiers: tuple[str, ...] = TIERS
    workers: int | None = None
    top: int = 10
    search: dict[str, Any] = field(default_factory=dict)
    keypoints: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "folder", Path(self.folder))
        if not 0.0 <= self.distractor_fraction < 1.0:
            raise ConfigError(
                f"EvalConfig.distractor_fraction must be in [0, 1), got {self.distractor_fraction!r}"
            )
        if self.per_transform < 1:
            raise ConfigError(f"EvalConfig.per_transform must be >= 1, got {self.per_transform!r}")
        names = tuple(
            t.name for t in get_transforms(None if self.transforms is None else list(self.transforms))
        )
        if not names:
            raise ConfigError("EvalConfig.transforms must name at least one transform, got ()")
        object.__setattr__(self, "transforms", names)
        for attr in ("js", "ks"):
            values = tuple(int(v) for v in getattr(self, attr))
            if not values or len(set(values)) != len(values):
                raise ConfigError(f"EvalConfig.{attr} must be non-empty and without repeats, got {values!r}")
            object.__setattr__(self, attr, tuple(sorted(values)))
        for j in self.js:
            KeypointConfig(budget=j)  # raises ConfigError naming the bad J
        for k in self.ks:
            SearchConfig(keypoints=k)
        object.__setattr__(self, "tiers", SearchConfig(tiers=self.tiers).tiers)
        if self.workers is not None and self.workers < 1:
            raise ConfigError(f"EvalConfig.workers must be >= 1 or None, got {self.workers!r}")
        if self.top < 1:
            raise ConfigError(f"EvalConfig.top must be >= 1, got {self.top!r}")
        object.__setattr__(self, "search", dict(self.search))
        object.__setattr__(self, "keypoints", dict(self.keypoints))
        if "budget" in self.keypoints:
            raise ConfigError("EvalConfig.keypoints cannot set budget: use js")
        unknown = set(self.keypoints) - {f.name for f in fields(KeypointConfig)}
        if unknown:
            raise ConfigError(f"unknown KeypointConfig fields {sorted(unknown)}")
        reserved = {"keypoints", "tiers"} & set(self.search)
        if reserved:
            raise ConfigError(f"EvalConfig.search cannot set {sorted(reserved)}: use ks and tiers")
        SearchConfig().replace(**self.search)  # a bad name, value or type is a ConfigError
        try:  # a TypeError comes from a value of another type
            KeypointConfig(**self.keypoints)
        except TypeError as exc:
            raise ConfigError(f"EvalConfig: a keypoint setting has the wrong type ({exc})") from None

    @property
    def local(self) -> bool:
        """Whether the local tier runs (and so whether J and K matter)."""
        return "local" in self.tiers

    @property
    def reference(self) -> tuple[int | None, int | None]:
        """(J, K) of the run the per-transform tables describe; ``(None, None)`` without local."""
        if not self.local:
            return None, None
        j, k = KeypointConfig().budget, SearchConfig().keypoints
        return (j if j in self.js else self.js[-1]), (k if k in self.ks else self.ks[-1])

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["folder"] = str(self.folder)
        return d


@dataclass(frozen=True)
class QuerySpec:
    """One query file and its ground truth; ``original`` is ``None`` for a distractor query."""

    path: str
    transform: str  # a TRANSFORMS name, or "plain" for a distractor queried as is
    family: str
    original: str | None
    source: str  # the image the query was made from
