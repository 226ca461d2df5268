"""Image and array I/O with one-line errors that name the file.

Images are float32 tensors [3,H,W] in [0,1], RGB order (OpenCV's BGR is converted here, once:
the core paper's code fed BGR to its network, which its users saw as colour shifts).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch


class SampleError(ValueError):
    """A file or folder that does not follow the focalstack sample format."""


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def read_image(path: str | Path) -> torch.Tensor:
    """Read an 8- or 16-bit image (PNG/JPEG/TIFF) as float32 RGB [3,H,W] in [0,1]."""
    import cv2

    path = Path(path)
    if not path.is_file():
        raise SampleError(f"{path}: image not found")
    arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION)
    if arr is None:
        raise SampleError(f"{path}: not a readable image (corrupt or unsupported format)")
    if arr.dtype == np.uint8:
        scale = 255.0
    elif arr.dtype == np.uint16:
        scale = 65535.0
    elif arr.dtype in (np.float32, np.float64):
        scale = 1.0
    else:
        raise SampleError(f"{path}: unsupported pixel type {arr.dtype}")
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    elif arr.shape[2] == 4:
        arr = cv2.cvtColor(arr, cv2.COLOR_BGRA2RGB)
    elif arr.shape[2] == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)
    else:
        raise SampleError(f"{path}: unsupported channel count {arr.shape[2]}")
    out = torch.from_numpy(np.ascontiguousarray(arr).astype(np.float32) / scale).permute(2, 0, 1).contiguous()
    return out


def to_uint(image: torch.Tensor, bit_depth: int = 8) -> np.ndarray:
    """[3,H,W] or [H,W] float in [0,1] → HxWx3 (or HxW) uint8/uint16, rounded."""
    if bit_depth not in (8, 16):
        raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth}")
    maxv = 255 if bit_depth == 8 else 65535
    a = image.detach().cpu().float().clamp(0, 1).numpy()
    if a.ndim == 3:
        a = a.transpose(1, 2, 0)
    return np.round(a * maxv).astype(np.uint8 if bit_depth == 8 else np.uint16)


def write_image(path: str | Path, image: torch.Tensor | np.ndarray, bit_depth: int = 8) -> None:
    """Write [3,H,W] float in [0,1] (or an HxWx3 / HxW uint array) as PNG/TIFF/JPEG."""
    import cv2

    arr = image if isinstance(image, np.ndarray) else to_uint(image, bit_depth)
    if arr.ndim == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)
    if not cv2.imwrite(str(path), arr):
        raise OSError(f"{path}: could not write image")


def read_depth(path: str | Path) -> torch.Tensor:
    """depth.npy → float32 [H,W] metres; 0 and non-finite values mark invalid pixels."""
    path = Path(path)
    try:
        arr = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise SampleError(f"{path}: depth file not found") from None
    except (ValueError, OSError) as e:
        raise SampleError(f"{path}: not a readable .npy array ({e})") from None
    if arr.ndim == 3 and 1 in (arr.shape[0], arr.shape[-1]):
        arr = arr.reshape(arr.shape[1:] if arr.shape[0] == 1 else arr.shape[:2])
    if arr.ndim != 2:
        raise SampleError(f"{path}: depth must be an H×W array, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number):
        raise SampleError(f"{path}: depth must be numeric, got {arr.dtype}")
    arr = arr.astype(np.float32)
    if np.any(np.isfinite(arr) & (arr < 0)):
        raise SampleError(f"{path}: depth has negative values (metres expected)")
    return torch.from_numpy(arr)


def atomic_write_dir(final: Path):
    """Context manager: yields a temporary sibling folder that is renamed to ``final`` on success
    and removed on failure, so a crash never leaves a half-written output folder."""
    import contextlib
    import shutil
    import tempfile

    @contextlib.contextmanager
    def _cm():
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
        try:
            yield tmp
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if final.exists():
            old = final.with_name(f".{final.name}.old-{os.getpid()}")
            final.rename(old)
            tmp.rename(final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(final)

    return _cm()
