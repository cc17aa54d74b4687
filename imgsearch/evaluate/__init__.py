"""Evaluation: named seeded transforms that make modified copies, and hit-rate tables."""

from .protocol import EvalConfig, QuerySpec, make_queries, run_eval, split
from .results import EvalResult, Table
from .transforms import TRANSFORMS, Transform, apply_transform, get_transforms

__all__ = [
    "TRANSFORMS",
    "EvalConfig",
    "EvalResult",
    "QuerySpec",
    "Table",
    "Transform",
    "apply_transform",
    "get_transforms",
    "make_queries",
    "run_eval",
    "split",
]
