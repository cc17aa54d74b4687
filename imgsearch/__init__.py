"""imgsearch: find modified copies of an image in a large collection.

Tiers, fastest first: ``exact`` (file digest), ``global`` (64-bit DCT pHash, dihedral variants),
``local`` (grid-spread keypoints, multi-radius patch hashes, votes, geometric verification).

>>> from imgsearch import Index, IndexConfig
>>> index = Index.create("indexes/demo", IndexConfig())      # doctest: +SKIP
>>> index.add(["photos/"])                                    # doctest: +SKIP
>>> index.query("upload.jpg").matches                         # doctest: +SKIP
"""

__version__ = "0.1.0"

from .config import GlobalConfig, IndexConfig, KeypointConfig, SearchConfig
from .errors import ConfigError, ImageReadError, ImgsearchError, IndexFormatError
from .index.core import AddReport, Index
from .search import Geometry, Match, QueryResult, Rejection, merge_results

__all__ = [
    "AddReport",
    "ConfigError",
    "Geometry",
    "GlobalConfig",
    "ImageReadError",
    "ImgsearchError",
    "Index",
    "IndexConfig",
    "IndexFormatError",
    "KeypointConfig",
    "Match",
    "QueryResult",
    "Rejection",
    "SearchConfig",
    "__version__",
    "merge_results",
]
