"""Small array helpers the hot paths share.

``np.unique`` of an integer array (without ``return_index`` or ``return_inverse``) takes numpy
2.x's hashing path, about ten times slower than sorting here: 0.5 ms against 0.04 ms for 5,000
values, 10 ms against 0.6 ms for 50,000 (numpy 2.4, one core). :func:`distinct` gives the same
sorted values by sorting.
"""

from __future__ import annotations

import numpy as np


def distinct(values: np.ndarray) -> np.ndarray:
    """The sorted distinct values of a 1-D array: ``np.unique(values)``, by a sort."""
    ordered = np.sort(np.asarray(values).ravel())
    if len(ordered) < 2:
        return ordered
    first = np.empty(len(ordered), bool)
    first[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=first[1:])
    return ordered[first]


def count_distinct(values: np.ndarray) -> int:
    """``len(np.unique(values))``, by a sort."""
    return len(distinct(values))
