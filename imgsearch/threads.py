"""Keep BLAS single-threaded inside imgsearch's work, whatever the caller imported first.

Our matrix products are small (32 x 32 DCTs, area-resampling weights). When numpy is imported before
imgsearch, OpenBLAS starts one thread per core, and its spinning threads fight OpenCV's and the
other extraction workers': measured 20.6 against 45.6 images/s for a two-worker build of 300 photos.
Environment variables only work before numpy loads, so the limit is applied at run time with
threadpoolctl, around each batch in the caller's process and for good in our worker processes.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

from threadpoolctl import ThreadpoolController

_controller: ThreadpoolController | None = None


def _get() -> ThreadpoolController:
    global _controller
    if _controller is None:  # created late, so it sees the BLAS that numpy and OpenCV loaded
        _controller = ThreadpoolController()
    return _controller


def single_blas_thread() -> AbstractContextManager[Any]:
    """Limit BLAS to one thread until the ``with`` block ends (about 25 µs to enter and leave)."""
    return _get().limit(limits=1, user_api="blas")


def limit_blas_for_good() -> None:
    """Limit BLAS to one thread for the rest of this process (extraction workers)."""
    _get().limit(limits=1, user_api="blas")
