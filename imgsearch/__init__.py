"""imgsearch: find modified copies of an image in a large collection.

Tiers, fastest first: ``exact`` (file digest), ``global`` (64-bit DCT pHash, dihedral variants),
``local`` (grid-spread keypoints, rotation-normalised patch hashes, votes, geometric verification).

>>> from imgsearch import Index, IndexConfig
>>> index = Index.create("indexes/demo", IndexConfig())      # doctest: +SKIP
>>> index.add(["photos/"])                                    # doctest: +SKIP
>>> index.query("upload.jpg").matches                         # doctest: +SKIP
"""

import os as _os

# Our matrix products are small (32x32 DCTs, a few hundred descriptors): BLAS threads only fight
# OpenCV's and FAISS's on few cores (measured 10-30x slower patch hashing on 2 cores). Takes effect
# when imgsearch is imported before numpy; set OPENBLAS_NUM_THREADS yourself to override.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    _os.environ.setdefault(_var, "1")

from ._version import __version__
from .config import GlobalConfig, IndexConfig, KeypointConfig, SearchConfig
from .errors import (
    ConfigError,
    ImageReadError,
    ImageTooLargeError,
    ImgsearchError,
    IndexFormatError,
    UnsupportedImageError,
)
from .index import AddReport, Index
from .results import Geometry, Match, QueryResult, Rejection, merge_results

__all__ = [
    "AddReport",
    "ConfigError",
    "Geometry",
    "GlobalConfig",
    "ImageReadError",
    "ImageTooLargeError",
    "ImgsearchError",
    "Index",
    "IndexConfig",
    "IndexFormatError",
    "KeypointConfig",
    "Match",
    "QueryResult",
    "Rejection",
    "SearchConfig",
    "UnsupportedImageError",
    "__version__",
    "merge_results",
]
