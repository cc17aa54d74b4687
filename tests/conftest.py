"""Shared fixtures: the 24 Kodak fixture photos, a global-only index of them, modified copies.

Every index built here has ``keypoints=None`` (exact and global tiers only): the local tier is
tested on its own.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from imgsearch import Index, IndexConfig, io

DATA = Path(__file__).parent / "data"
KODAK = sorted(DATA.glob("[0-9][0-9][0-9][0-9].jpg"))
PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "photos"  # research-only, optional
GLOBAL_ONLY = IndexConfig(keypoints=None)

assert len(KODAK) == 24, f"expected 24 fixture photos in {DATA}, found {len(KODAK)}"


def kodak_rgb(i: int) -> np.ndarray:
    """Fixture photo ``i`` as ``(H, W, 3)`` uint8 RGB, full size."""
    return io.read_image(KODAK[i])


def kodak_gray(i: int) -> np.ndarray:
    """Fixture photo ``i`` as ``(H, W)`` uint8 luminance, full size."""
    return io.read_image(KODAK[i], gray=True)


def encode_jpeg(rgb: np.ndarray, quality: int = 95) -> bytes:
    """Encode an ``(H, W, 3)`` RGB or ``(H, W)`` gray uint8 array as JPEG bytes."""
    image = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR) if rgb.ndim == 3 else rgb
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(image), [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buf.tobytes()


def write_jpeg(path: Path, rgb: np.ndarray, quality: int = 95) -> Path:
    """Write a (modified) image as a JPEG file, making parent folders; returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode_jpeg(rgb, quality))
    return path


def rescale(rgb: np.ndarray, factor: float, interpolation: int | None = None) -> np.ndarray:
    """Resize by ``factor`` (INTER_AREA when shrinking, INTER_LINEAR when enlarging by default)."""
    if interpolation is None:
        interpolation = cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR
    h, w = rgb.shape[:2]
    return cv2.resize(rgb, (round(w * factor), round(h * factor)), interpolation=interpolation)


@pytest.fixture(scope="session")
def kodak_paths() -> list[Path]:
    """The 24 fixture photos, sorted (``0000.jpg`` … ``0023.jpg``)."""
    return list(KODAK)


@pytest.fixture(scope="session")
def global_index(tmp_path_factory: pytest.TempPathFactory) -> Index:
    """A read-only exact+global index of the 24 fixture photos (do not add or remove)."""
    index = Index.create(tmp_path_factory.mktemp("global_index") / "ix", GLOBAL_ONLY)
    report = index.add([DATA], workers=1)
    assert report.ok and len(report.added) == 24, report
    yield index
    index.close()


@pytest.fixture
def photo_dir(tmp_path: Path) -> Path:
    """A private copy of the 24 fixture photos in ``tmp_path / "photos"``, safe to modify."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for p in KODAK:
        shutil.copy2(p, folder / p.name)
    return folder


@pytest.fixture
def make_index(tmp_path: Path) -> Callable[..., Index]:
    """Build a fresh exact+global index in ``tmp_path`` from some paths; closed at teardown."""
    made: list[Index] = []

    def make(paths, name: str = "ix") -> Index:
        index = Index.create(tmp_path / name, GLOBAL_ONLY)
        report = index.add(paths, workers=1)
        assert report.ok, report.failed
        made.append(index)
        return index

    yield make
    for index in made:
        index.close()


# Every EXIF orientation as the numpy operation that brings stored pixels to display pixels.
ORIENT = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: np.swapaxes(a, 0, 1),
    6: lambda a: np.rot90(a, -1),  # 90 degrees clockwise
    7: lambda a: np.rot90(a, -1)[::-1],
    8: lambda a: np.rot90(a, 1),
}
