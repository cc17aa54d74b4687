"""keep_freed_memory: after it, a block of a few MB comes from the reusable heap, not a fresh mmap."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

PROBE = textwrap.dedent(
    """
    import ctypes, sys
    import numpy as np
    from imgsearch import malloc

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in
                    ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
                     "uordblks", "fordblks", "keepcost")]

    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = MallInfo2
    if sys.argv[1] == "keep":
        assert malloc.keep_freed_memory()
    before = libc.mallinfo2().hblkhd
    block = np.ones(4 << 20, np.uint8)  # 4 MiB, touched
    print(libc.mallinfo2().hblkhd - before)
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_blocks_of_a_few_mb_stay_on_the_heap() -> None:
    def mmapped(mode: str) -> int:
        out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
        return int(out.stdout.strip())

    try:
        default = mmapped("default")
    except subprocess.CalledProcessError as exc:  # no mallinfo2: not glibc >= 2.33
        pytest.skip(f"mallinfo2 unavailable: {exc.stderr.strip()[-200:]}")
    assert default >= 4 << 20  # glibc's default: a fresh mmap, returned on free
    assert mmapped("keep") == 0  # ours: from the heap, reused by the next query
