"""Image and array I/O with one-line errors that name the file, and the one owner of output
writes: atomic files and folders, and the rule of what focalstack may replace (see "outputs").

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
    return torch.from_numpy(read_image_array(path)).permute(2, 0, 1).contiguous()


def read_image_array(path: str | Path) -> np.ndarray:
    """Read an 8- or 16-bit image (PNG/JPEG/TIFF) as a float32 RGB H×W×3 array in [0,1] (OpenCV's
    layout: what the streaming paths filter without a transposed copy)."""
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
    out = np.ascontiguousarray(arr).astype(np.float32)
    out /= scale
    return out


def to_uint(image: torch.Tensor | np.ndarray, bit_depth: int = 8) -> np.ndarray:
    """[3,H,W] or [H,W] float tensor, or an HxWx3 / HxW float32 array, in [0,1] → HxWx3 (or HxW)
    uint8/uint16: clamped, × 255 or 65535 in float32, rounded half to even. An array is converted in
    place (it is overwritten: no extra float copy of a photo-sized frame, as the importer streams)."""
    if bit_depth not in (8, 16):
        raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth}")
    if isinstance(image, torch.Tensor):
        a = image.detach().cpu().float().clamp(0, 1).numpy()   # a fresh array
        if a.ndim == 3:
            a = a.transpose(1, 2, 0)
    else:
        a = image
    np.clip(a, 0, 1, out=a)
    a *= 255 if bit_depth == 8 else 65535
    np.rint(a, out=a)
    return a.astype(np.uint8 if bit_depth == 8 else np.uint16)


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


# ---- outputs: what focalstack may write, and what it may replace ---------------------------------
#
# One rule for every command: a folder is replaced only if it is empty, or if focalstack wrote it
# (its ``.focalstack`` marker names the same kind) and it holds nothing but the files focalstack
# writes into a folder of that kind. An output never is, contains or sits inside an input, and an
# output folder path that is an existing file is refused. Everything else is refused in one line:
# a user's folder, the input data and files focalstack did not write are never moved or deleted.

MARKER = ".focalstack"
"""Marker file focalstack leaves in every folder it writes: JSON {"written_by", "kind", "version"}."""

# Leaf kinds (folders written whole, then renamed into place) → the names focalstack writes there.
LEAF_FILES: dict[str, tuple[str, ...]] = {
    "sample": ("camera.json", "frame_*", "depth.npy", "aif.png", "import.json", "disparity.npy"),
    "prediction": ("depth.npy", "depth.png", "depth_color.png", "aif.png", "aif.tif", "points.ply",
                   "recon_error.json", "recon_error.png", "meta.json", "metrics.json", "metrics.md"),
}
# Container kinds: folders focalstack writes *into* (dataset roots, prediction sets, training runs,
# eval results, the demo); never replaced whole.
CONTAINER_KINDS = ("dataset", "predictions", "run", "eval", "demo")


class OutputError(ValueError):
    """An output path focalstack refuses to write (it would replace or overlap something it did not write)."""


def read_marker(folder: str | Path) -> str | None:
    """The kind in ``folder``'s focalstack marker, or None when focalstack did not mark it."""
    import json

    path = Path(folder) / MARKER
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("written_by") != "focalstack":
        return None
    kind = data.get("kind")
    return kind if isinstance(kind, str) else None


def write_marker(folder: str | Path, kind: str) -> None:
    import json

    from .. import __version__

    if kind not in LEAF_FILES and kind not in CONTAINER_KINDS:
        raise ValueError(f"unknown output kind {kind!r}")
    (Path(folder) / MARKER).write_text(json.dumps({"written_by": "focalstack", "kind": kind,
                                                   "version": __version__}) + "\n")


def _real(p: str | Path) -> Path:
    return Path(os.path.realpath(os.path.expanduser(str(p))))


def check_output_path(out: str | Path, inputs=()) -> None:
    """Refuse (OutputError, one line) an output folder path that is an existing file, or that is,
    contains or sits inside one of ``inputs`` (real paths compared: symlinks resolved)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out}: exists and is a file, not a folder; give a folder path for the output")
    ro = _real(out)
    for inp in inputs:
        if inp is None:
            continue
        ri = _real(inp)
        if ro == ri:
            raise OutputError(f"{out}: is the input {inp}; write the output somewhere else")
        if ri in ro.parents:
            raise OutputError(f"{out}: lies inside the input {inp}; write the output somewhere else")
        if ro in ri.parents:
            raise OutputError(f"{out}: contains the input {inp}; write the output somewhere else")


def _why_not_replaceable(folder: Path, kind: str) -> str | None:
    """Why ``folder`` may not be replaced by a new ``kind`` folder (None: it may)."""
    from fnmatch import fnmatchcase

    entries = list(folder.iterdir())
    if not entries:
        return None
    found = read_marker(folder)
    if found is None:
        return "exists and holds files focalstack did not write"
    if found != kind:
        return f"holds a focalstack {found}, not a {kind}"
    for e in entries:
        if e.name == MARKER:
            continue
        if e.is_dir() or e.is_symlink() or not any(fnmatchcase(e.name, pat) for pat in LEAF_FILES[kind]):
            return f"holds {e.name}, which focalstack does not write into a {kind} folder"
    return None


def check_replaceable(final: str | Path, kind: str, inputs=()) -> None:
    """Raise OutputError unless a ``kind`` folder may be written to ``final`` (see the rule above);
    call it before a long computation so that a refusal comes first."""
    if kind not in LEAF_FILES:
        raise ValueError(f"{kind!r} is not a folder kind written whole")
    final = Path(final)
    check_output_path(final, inputs)
    if final.is_dir():
        why = _why_not_replaceable(final, kind)
        if why:
            raise OutputError(f"{final}: {why}; not replacing it (choose a new or empty folder)")


def claim_output_dir(folder: str | Path, kind: str, inputs=(), accept=None, create: bool = True) -> Path:
    """Create (or reuse) a folder focalstack writes *into*: refused when it is a file, overlaps an
    input, or exists non-empty without a focalstack marker of one of the ``accept`` kinds
    (default: ``kind``). A new or empty folder gets the marker; ``create=False`` only checks
    (to refuse before a long job starts). Returns the folder."""
    if kind not in CONTAINER_KINDS:
        raise ValueError(f"{kind!r} is not a container kind")
    folder = Path(folder)
    check_output_path(folder, inputs)
    if folder.is_dir():
        found = read_marker(folder)
        if found is not None:
            if found not in (accept or (kind,)):
                raise OutputError(f"{folder}: holds a focalstack {found}, not a {kind}; choose another folder")
            return folder
        if any(folder.iterdir()):
            raise OutputError(f"{folder}: exists and holds files focalstack did not write; "
                              "choose a new or empty folder")
    if not create:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    write_marker(folder, kind)
    return folder


def claim_dataset_dir(out: str | Path, settings_file: str, settings: dict, overwrite: bool = False, inputs=(),
                      may_differ=()) -> Path:
    """Claim ``out`` for a resumable dataset run whose samples are made with ``settings`` (recorded in
    ``out/settings_file``), so that a resumed run adds only samples made the same way: refused (one
    line) when focalstack did not write the folder, and when an earlier run wrote it with other
    settings — the keys in ``may_differ`` (which samples, not how they are made) aside — unless
    ``overwrite``. Used by ``synth`` and ``import-dataset``. Returns the folder."""
    import json

    out = Path(out)
    claim_output_dir(out, "dataset", inputs, create=False)   # never into a folder focalstack did not write
    path = out / settings_file
    if path.is_file() and not overwrite:
        try:
            old = json.loads(path.read_text())
        except json.JSONDecodeError:
            raise OutputError(f"{path}: unreadable settings of an earlier run; use --overwrite or a new output "
                              "folder") from None
        diff = sorted(k for k in set(old) | set(settings) if k not in may_differ and old.get(k) != settings.get(k))
        if diff:
            raise OutputError(f"{out}: was written with different settings ({', '.join(diff)}); "
                              "use the same options, a new output folder, or --overwrite")
    claim_output_dir(out, "dataset", inputs)
    atomic_write_file(path, json.dumps(settings, indent=2) + "\n")
    return out


def atomic_write_file(path: str | Path, data: bytes | str) -> Path:
    """Write one file atomically (temporary sibling, fsync, ``os.replace``). The caller owns the
    folder (:func:`claim_output_dir`); an existing folder at ``path`` is refused."""
    import tempfile

    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{path}: is a folder; cannot write a file there")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_dir(final: str | Path, kind: str, inputs=()):
    """Context manager: yields a temporary sibling folder, marks it as a focalstack ``kind`` folder
    and renames it to ``final`` on success (removed on failure), so a crash never leaves a
    half-written output. ``final`` may exist only if :func:`check_replaceable` allows it: checked
    before the yield and again right before the swap."""
    import contextlib
    import shutil
    import tempfile

    final = Path(final)
    check_replaceable(final, kind, inputs)

    @contextlib.contextmanager
    def _cm():
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
        try:
            yield tmp
            write_marker(tmp, kind)
            check_replaceable(final, kind, inputs)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if final.is_dir() and any(final.iterdir()):
            # only ever focalstack's own files of this kind (checked above)
            old = final.with_name(f".{final.name}.old-{os.getpid()}")
            final.rename(old)
            tmp.rename(final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            if final.is_dir():
                final.rmdir()
            tmp.rename(final)

    return _cm()
