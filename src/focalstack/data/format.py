"""The on-disk sample format. A dataset is a folder of sample folders::

    sample_dir/
      camera.json      see focalstack.optics.camera (its "encoding": "srgb" (default) or "linear")
      frame_00.png …   RGB, 8 or 16 bit PNG/TIFF (or JPEG), in the order of focus_distances_m
      depth.npy        float32 metres, H×W (optional; 0 or non-finite = invalid)
      aif.png          all-in-focus image (optional), in the same encoding as the frames

Image files are in camera.json's ``encoding``; :func:`load_sample` converts them to the pipeline's
working encoding in one place (:func:`focalstack.data.encoding.to_working`), and
:func:`save_sample` converts back (linear samples are written as 16-bit files).

Every reader raises ``SampleError`` with one line naming the file and the problem.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from ..optics.camera import CameraError, FocalStackCamera
from .encoding import from_working, to_working
from .io import SampleError, atomic_write_dir, read_depth, read_image, write_image

FRAME_RE = re.compile(r"^frame_(\d+)\.(png|tif|tiff|jpg|jpeg)$", re.IGNORECASE)


@dataclass
class FocalStackSample:
    """One focal stack.

    frames: [F,3,H,W] float32 in [0,1], in the order of camera.focus_distances_m, in the pipeline's
      working encoding (:data:`focalstack.data.encoding.WORKING_ENCODING`, whatever the files' encoding;
      ``camera.encoding`` says what the files hold).
    depth_m: [H,W] float32 metres or None (0 / non-finite = invalid).
    aif: [3,H,W] float32 in [0,1] or None, working encoding like the frames.
    """

    frames: torch.Tensor
    camera: FocalStackCamera
    depth_m: torch.Tensor | None = None
    aif: torch.Tensor | None = None
    name: str = ""

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def size_hw(self) -> tuple[int, int]:
        return int(self.frames.shape[-2]), int(self.frames.shape[-1])

    def subset(self, frames) -> "FocalStackSample":
        frames = list(frames)
        return replace(self, frames=self.frames[frames], camera=self.camera.subset(frames))

    def validate(self, where: str = "sample") -> None:
        if self.frames.dim() != 4 or self.frames.shape[1] != 3:
            raise SampleError(f"{where}: frames must be [F,3,H,W], got {tuple(self.frames.shape)}")
        if self.frames.shape[0] != self.camera.num_frames:
            raise SampleError(f"{where}: {self.frames.shape[0]} frames but camera has "
                              f"{self.camera.num_frames} focus distances")
        hw = self.size_hw
        if self.depth_m is not None and tuple(self.depth_m.shape) != hw:
            raise SampleError(f"{where}: depth is {tuple(self.depth_m.shape)} but frames are {hw}")
        if self.aif is not None and tuple(self.aif.shape) != (3, *hw):
            raise SampleError(f"{where}: aif is {tuple(self.aif.shape)} but frames are (3, {hw[0]}, {hw[1]})")


def frame_paths(sample_dir: Path) -> list[Path]:
    """frame_*.{png,tif,jpg} sorted by their index."""
    found = []
    for p in sample_dir.iterdir():
        m = FRAME_RE.match(p.name)
        if m:
            found.append((int(m.group(1)), p))
    found.sort()
    idx = [i for i, _ in found]
    if len(set(idx)) != len(idx):
        raise SampleError(f"{sample_dir}: duplicate frame indices {idx}")
    return [p for _, p in found]


def is_sample_dir(path: str | Path) -> bool:
    return (Path(path) / "camera.json").is_file()


def _has_frames(path: Path) -> bool:
    return any(FRAME_RE.match(p.name) for p in path.iterdir())


def list_samples(root: str | Path, strict: bool = True) -> list[Path]:
    """Sample folders under ``root`` (sorted by name); ``root`` itself if it is one.

    A sub-folder holding frame_NN images but no camera.json is a broken sample: with ``strict``
    (the default) it is a SampleError naming it, otherwise it is skipped with a warning naming it
    (never silently: a dataset that loses samples changes every number computed from it)."""
    import warnings

    root = Path(root)
    if not root.exists():
        raise SampleError(f"{root}: no such folder")
    if not root.is_dir():
        raise SampleError(f"{root}: not a folder")
    if is_sample_dir(root):
        return [root]
    dirs = sorted(p for p in root.iterdir() if p.is_dir())
    samples = [p for p in dirs if is_sample_dir(p)]
    broken = [p for p in dirs if not is_sample_dir(p) and _has_frames(p)]
    if broken:
        more = f" (and {len(broken) - 1} more)" if len(broken) > 1 else ""
        if strict:
            raise SampleError(f"{broken[0]}: has frames but no camera.json{more}; add it, or pass --no-strict "
                              "to skip such folders")
        for p in broken:
            warnings.warn(f"{p}: has frames but no camera.json; skipped", stacklevel=2)
    if not samples:
        raise SampleError(f"{root}: no sample folders (folders holding camera.json) found")
    return samples


def load_camera(sample_dir: str | Path) -> FocalStackCamera:
    path = Path(sample_dir) / "camera.json"
    if not path.is_file():
        raise SampleError(f"{path}: missing camera.json")
    try:
        return FocalStackCamera.load(path)
    except CameraError as e:
        raise SampleError(str(e)) from None


def _camera_and_frame_paths(d: Path, min_frames: int) -> tuple[FocalStackCamera, list[Path]]:
    """camera.json and the frame files of a sample folder, checked against each other."""
    if not d.is_dir():
        raise SampleError(f"{d}: sample folder not found")
    camera = load_camera(d)
    paths = frame_paths(d)
    if not paths:
        raise SampleError(f"{d}: no frame_NN.png files")
    if len(paths) != camera.num_frames:
        raise SampleError(f"{d / 'camera.json'}: focus_distances_m has {camera.num_frames} entries "
                          f"but the folder has {len(paths)} frames")
    if len(paths) < min_frames:
        raise SampleError(f"{d}: {len(paths)} frame(s) but at least {min_frames} are needed")
    return camera, paths


def check_sample(sample_dir: str | Path, min_frames: int = 1) -> tuple[int, tuple[int, int]]:
    """Cheap structural check of a sample folder without decoding the images: camera.json valid,
    frame count = focus list length ≥ ``min_frames``, every frame's header readable and all the same
    size. Raises SampleError naming the file (a dataset is checked up front this way, so that a bad
    sample stops a long job at once with one line instead of mid-run inside a loader worker).
    Returns (number of frames, (H, W) in pixels)."""
    from PIL import Image, UnidentifiedImageError

    _, paths = _camera_and_frame_paths(Path(sample_dir), min_frames)
    size0 = None
    for fp in paths:
        try:
            with Image.open(fp) as im:
                size = im.size
        except (UnidentifiedImageError, OSError):
            raise SampleError(f"{fp}: not a readable image (corrupt or unsupported format)") from None
        if size0 is not None and size != size0:
            raise SampleError(f"{fp}: frame size {size[::-1]} differs from {paths[0].name}'s {size0[::-1]}")
        size0 = size
    return len(paths), (size0[1], size0[0])


def load_sample(sample_dir: str | Path, load_depth: bool = True, load_aif: bool = True,
                min_frames: int = 1) -> FocalStackSample:
    """Read a sample folder. Checks frame count vs focus list, frame sizes, depth/aif sizes.
    8- and 16-bit frames; images of a ``"linear"`` sample are converted to the working encoding here
    (:func:`focalstack.data.encoding.to_working`, the one place)."""
    d = Path(sample_dir)
    camera, paths = _camera_and_frame_paths(d, min_frames)
    frames = []
    for p in paths:
        img = read_image(p)
        if frames and img.shape != frames[0].shape:
            raise SampleError(f"{p}: frame size {tuple(img.shape[1:])} differs from "
                              f"{paths[0].name}'s {tuple(frames[0].shape[1:])}")
        frames.append(img)
    stack = to_working(torch.stack(frames), camera.encoding)
    depth = aif = None
    if load_depth and (d / "depth.npy").is_file():
        depth = read_depth(d / "depth.npy")
        if tuple(depth.shape) != tuple(stack.shape[-2:]):
            raise SampleError(f"{d / 'depth.npy'}: size {tuple(depth.shape)} differs from the frames' "
                              f"{tuple(stack.shape[-2:])}")
    if load_aif and (d / "aif.png").is_file():
        aif = read_image(d / "aif.png")
        if aif.shape != stack.shape[1:]:
            raise SampleError(f"{d / 'aif.png'}: size {tuple(aif.shape[1:])} differs from the frames' "
                              f"{tuple(stack.shape[-2:])}")
        aif = to_working(aif, camera.encoding)
    return FocalStackSample(stack, camera, depth, aif, name=d.name)


@dataclass
class SampleFiles:
    """A sample folder opened without decoding its frames — for stacks too large to hold
    (:func:`open_sample_files`; ``predict`` streams photo-sized stacks through it). Frames are read one
    at a time, in the working encoding like :func:`load_sample`'s; ``frames`` is None (the stack is
    never held), so code written for :class:`FocalStackSample` sees at once that it has no pixels."""

    paths: list
    camera: FocalStackCamera
    size_hw: tuple[int, int]
    name: str = ""
    frames: None = None

    @property
    def num_frames(self) -> int:
        return len(self.paths)

    def read_frame(self, i: int):
        """Frame i as an H×W×3 float32 array in [0,1], working encoding (a frame whose size differs
        from frame 0's raises SampleError naming the file)."""
        from .io import read_image_array
        x = read_image_array(self.paths[i])
        if x.shape[:2] != tuple(self.size_hw):
            raise SampleError(f"{self.paths[i]}: frame size {x.shape[:2]} differs from {self.paths[0].name}'s "
                              f"{tuple(self.size_hw)}")
        return to_working(x, self.camera.encoding)

    def downscaled(self, size_hw: tuple[int, int], frames: dict | None = None) -> FocalStackSample:
        """The stack area-averaged to ``size_hw`` (H, W) as an in-memory sample whose camera has the
        larger pixel pitch (:meth:`FocalStackCamera.resized`); ``frames``: already downscaled frames by
        index ([3,h,w] tensors), the others are read here one at a time."""
        import cv2
        h, w = (int(v) for v in size_hw)
        out = []
        for i in range(self.num_frames):
            if frames and i in frames:
                out.append(frames[i])
                continue
            small = cv2.resize(self.read_frame(i), (w, h), interpolation=cv2.INTER_AREA)
            out.append(torch.from_numpy(small).permute(2, 0, 1).contiguous())
        factor = w / self.size_hw[1]
        return FocalStackSample(torch.stack(out), self.camera.resized(factor), name=self.name)


def open_sample_files(sample_dir: str | Path, min_frames: int = 1) -> SampleFiles:
    """A sample folder's camera and frame files, checked (:func:`check_sample`) but not decoded."""
    d = Path(sample_dir)
    _, hw = check_sample(d, min_frames)
    camera, paths = _camera_and_frame_paths(d, min_frames)
    return SampleFiles(paths, camera, hw, d.name)


def save_sample(sample: FocalStackSample, sample_dir: str | Path, bit_depth: int = 8, inputs=()) -> Path:
    """Write a sample folder atomically (temporary folder, then rename). An existing ``sample_dir``
    is replaced only if focalstack wrote it as a sample (see :func:`focalstack.data.io.check_replaceable`);
    ``inputs``: paths the output must not be, contain or sit inside. Images are written in
    ``sample.camera.encoding`` (from the working encoding); a ``"linear"`` sample always at 16 bit."""
    sample.validate(str(sample_dir))
    out = Path(sample_dir)
    enc = sample.camera.encoding
    if enc == "linear":
        bit_depth = 16   # 8-bit linear light would band in the shadows
    width = max(2, len(str(sample.num_frames - 1)))
    with atomic_write_dir(out, "sample", inputs) as tmp:
        sample.camera.save(tmp / "camera.json")
        for i in range(sample.num_frames):
            write_image(tmp / f"frame_{i:0{width}d}.png", from_working(sample.frames[i], enc), bit_depth)
        if sample.depth_m is not None:
            np.save(tmp / "depth.npy", sample.depth_m.detach().cpu().numpy().astype(np.float32))
        if sample.aif is not None:
            write_image(tmp / "aif.png", from_working(sample.aif, enc), bit_depth)
    return out
