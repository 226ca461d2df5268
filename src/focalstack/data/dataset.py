"""A torch Dataset over a folder of sample folders (see focalstack.data.format)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, default_collate

from ..optics.camera import camera_tensors
from .format import FocalStackSample, check_sample, list_samples, load_sample
from .io import SampleError


@dataclass
class StackAugment:
    """Training-time augmentation.

    crop_size: (h, w) random crop (None = full frame; crops change no camera parameter).
    hflip / vflip: random flips.
    num_frames: use a random subset of this many frames (None = all; must be ≤ the stack size).
    permute: shuffle the frame order (the camera's focus list follows the frames).
    sort_subset: keep a random subset in focus order (ignored if permute).
    crop_view: items of a crop also hold ``crop_view``, the whole stack it was cut from, for a model
        that reads a prior over the whole image (:class:`focalstack.models.CropView`): a dict of
        ``frames`` [F,3,H,W] (the crop's frames in the sample's own order, neither flipped nor
        permuted: the same whole stack whatever the draw), ``camera`` (their camera_tensors),
        ``yx`` (the crop's top-left pixel in it), ``flips`` ((vertical, horizontal): the flips the
        crop then had) and ``key`` ("<index>:<frames used>", one whole stack, for a cache).
    """

    crop_size: tuple[int, int] | None = None
    hflip: bool = False
    vflip: bool = False
    num_frames: int | None = None
    permute: bool = False
    sort_subset: bool = True
    crop_view: bool = False


class FocalStackDataset(Dataset):
    """Items are dicts of tensors (batched by the default collate when stack sizes agree):

    frames [F,3,h,w] in [0,1]; camera: dict of CameraBatch fields (focus_distances_m [F], ...);
    depth [1,h,w] metres (zeros if absent) and has_depth (bool); aif [3,h,w] (zeros if absent)
    and has_aif; index (int). ``name(i)`` gives the sample folder name.

    ``labels_dir``: a folder of pseudo-labels ``<sample name>.safetensors`` (``inv_depth`` [H,W] 1/m,
    ``weight`` [H,W]; :mod:`focalstack.train.teacher`): items then also hold teacher_inv_depth
    [1,h,w] and teacher_weight [1,h,w], cropped and flipped with the frames (weight 0 if absent).
    """

    def __init__(self, root: str | Path, augment: StackAugment | None = None, *, min_frames: int = 1,
                 require_depth: bool = False, require_aif: bool = False, cache: bool = False,
                 seed: int = 0, strict: bool = True, labels_dir: str | Path | None = None):
        self.paths = list_samples(root, strict=strict)
        self.labels_dir = Path(labels_dir) if labels_dir is not None else None
        self.augment = augment or StackAugment()
        self.min_frames = min_frames
        self.require_depth = require_depth
        self.require_aif = require_aif
        self.seed = seed
        self.epoch = 0
        self._cache: dict[int, FocalStackSample] | None = {} if cache else None
        self.scales: list[float] | None = None

    def set_scales(self, scales) -> None:
        """Resize sample i by ``scales[i]`` (≤ 1) before cropping, in linear light, with the camera's pixel
        pitch (:func:`focalstack.render.light.resize_stack`): the working scale a run reads each stack at
        (:mod:`focalstack.train.views`). Depth is resampled nearest (0 stays invalid), the AIF like the
        frames, pseudo-labels bilinearly. None or all 1: every sample at its own size."""
        if scales is not None and len(scales) != len(self.paths):
            raise ValueError(f"one scale per sample: {len(scales)} scales for {len(self.paths)} samples")
        self.scales = None if scales is None or all(float(x) == 1.0 for x in scales) else [float(x) for x in scales]

    def check(self) -> list[tuple[int, tuple[int, int]]]:
        """Check every sample's structure up front (:func:`focalstack.data.format.check_sample`) and
        that the crop fits every sample; returns (frames, (H, W)) per sample, in ``paths`` order."""
        shapes = [check_sample(d, self.min_frames) for d in self.paths]   # broken files first
        crop = self.augment.crop_size
        for d, (nf, (h, w)) in zip(self.paths, shapes):
            if crop is not None and (crop[0] > h or crop[1] > w):
                raise SampleError(f"{d}: crop {crop[0]}×{crop[1]} larger than the frames {h}×{w} "
                                  "(set --crop H W, or --crop 0 0 for full frames)")
            if self.augment.num_frames is not None and self.augment.num_frames > nf:
                raise SampleError(f"{d}: {nf} frames but {self.augment.num_frames} were asked for (--frames)")
        return shapes

    def __len__(self) -> int:
        return len(self.paths)

    def name(self, i: int) -> str:
        return self.paths[i].name

    def set_epoch(self, epoch: int) -> None:
        """Augmentation randomness is a pure function of (seed, epoch, index): resumable and
        identical across DataLoader worker counts."""
        self.epoch = epoch

    def sample(self, i: int) -> FocalStackSample:
        if self._cache is not None and i in self._cache:
            return self._cache[i]
        s = load_sample(self.paths[i], min_frames=self.min_frames)
        if self.require_depth and s.depth_m is None:
            raise SampleError(f"{self.paths[i]}: depth.npy is required (depth supervision / evaluation)")
        if self.require_aif and s.aif is None:
            raise SampleError(f"{self.paths[i]}: aif.png is required (AIF supervision)")
        if self._cache is not None:
            self._cache[i] = s
        return s

    def __getitem__(self, i: int) -> dict:
        s = self.sample(i)
        a = self.augment
        g = torch.Generator().manual_seed((self.seed * 1_000_003 + self.epoch) * 1_000_003 + i)
        f = s.num_frames
        order = list(range(f))
        if a.num_frames is not None:
            if a.num_frames > f:
                raise SampleError(f"{self.paths[i]}: {f} frames but {a.num_frames} were asked for")
            order = torch.randperm(f, generator=g)[: a.num_frames].tolist()
            if a.sort_subset and not a.permute:
                order.sort()
        if a.permute:
            order = [order[j] for j in torch.randperm(len(order), generator=g).tolist()]
        frames = s.frames[order]
        h, w = s.size_hw
        depth = s.depth_m if s.depth_m is not None else torch.zeros(h, w)
        aif = s.aif if s.aif is not None else torch.zeros(3, h, w)
        # pseudo-labels ride along with the depth map through every crop and flip: [2,H,W] (inv depth, weight)
        label = None
        if self.labels_dir is not None:
            label = torch.zeros(2, h, w)
            lp = self.labels_dir / f"{self.paths[i].name}.safetensors"
            if lp.is_file():
                from safetensors.torch import load_file
                lab = load_file(str(lp))
                if tuple(lab["inv_depth"].shape) != (h, w):
                    raise SampleError(f"{lp}: label size {tuple(lab['inv_depth'].shape)} ≠ frames {h}×{w}")
                label = torch.stack([lab["inv_depth"], lab["weight"]])
        camera = s.camera
        scale = self.scales[i] if self.scales is not None else 1.0
        if scale != 1.0:   # the working scale: the blur in pixels shrinks with the image and the pixel pitch grows
            from ..render.light import resize_stack
            frames, camera = resize_stack(frames, s.camera, scale)
            h, w = frames.shape[-2:]
            depth = F.interpolate(depth[None, None], size=(h, w), mode="nearest")[0, 0]
            aif = resize_stack(aif[None], s.camera, scale)[0][0] if s.aif is not None else torch.zeros(3, h, w)
            if label is not None:
                label = F.interpolate(label[None], size=(h, w), mode="bilinear", align_corners=False, antialias=True)[0]
        view = None
        if a.crop_size is not None:
            ch, cw = a.crop_size
            if ch > h or cw > w:
                raise SampleError(f"{self.paths[i]}: crop {ch}×{cw} larger than the frames {h}×{w}")
            y0 = int(torch.randint(0, h - ch + 1, (1,), generator=g))
            x0 = int(torch.randint(0, w - cw + 1, (1,), generator=g))
            view = frames
            frames = frames[..., y0:y0 + ch, x0:x0 + cw]
            depth = depth[y0:y0 + ch, x0:x0 + cw]
            aif = aif[:, y0:y0 + ch, x0:x0 + cw]
            label = None if label is None else label[:, y0:y0 + ch, x0:x0 + cw]
        flips = [False, False]
        if a.hflip and bool(torch.rand((), generator=g) < 0.5):
            frames, depth, aif = frames.flip(-1), depth.flip(-1), aif.flip(-1)
            label = None if label is None else label.flip(-1)
            flips[1] = True
        if a.vflip and bool(torch.rand((), generator=g) < 0.5):
            frames, depth, aif = frames.flip(-2), depth.flip(-2), aif.flip(-2)
            label = None if label is None else label.flip(-2)
            flips[0] = True
        extra = {} if label is None else {"teacher_inv_depth": label[0:1].contiguous(),
                                          "teacher_weight": label[1:2].contiguous()}
        if a.crop_view and view is not None:
            used = sorted(order)   # the frames used, in the sample's order
            extra["crop_view"] = {"frames": view[[order.index(k) for k in used]], "camera": camera_tensors(camera, used),
                                  "yx": (y0, x0), "flips": tuple(flips), "key": f"{i}:{','.join(map(str, used))}"}
        return {**extra,
            "frames": frames.contiguous(),
            "camera": camera_tensors(camera, order),
            "depth": depth.unsqueeze(0).contiguous(),
            "has_depth": torch.tensor(s.depth_m is not None),
            "aif": aif.contiguous(),
            "has_aif": torch.tensor(s.aif is not None),
            "index": i,
        }


def collate_stacks(items: list[dict]) -> dict:
    """Batch items whose stacks have different frame counts: every stack is padded to the batch's
    largest F by repeating its own frames cyclically (frame k, then k mod F_i), with the camera's
    focus distances and f-numbers repeated alongside.

    Why repetition is exact, not an approximation: a frame taken twice at the same focus is a
    valid focal stack of the same scene — the thin-lens model re-renders both copies identically,
    the stack max-pooling of the networks ignores duplicates, and a relative-blur cost volume
    compares the copy with itself at zero extra blur. The only effect is that the repeated frames
    weigh more in the mean re-rendering loss. Equal-size stacks are collated unchanged."""
    fmax = max(int(it["frames"].shape[0]) for it in items)
    padded = []
    for it in items:
        f = int(it["frames"].shape[0])
        if f == fmax:
            padded.append(it)
            continue
        idx = torch.arange(fmax) % f
        cam = dict(it["camera"])
        for k in ("focus_distances_m", "f_numbers"):
            cam[k] = cam[k][idx]
        padded.append({**it, "frames": it["frames"][idx], "camera": cam})
    # the whole stacks of crops (StackAugment.crop_view) may differ in size and frame count: a list
    views = [it["crop_view"] for it in padded] if all("crop_view" in it for it in padded) else None
    batch = default_collate([{k: v for k, v in it.items() if k != "crop_view"} for it in padded])
    if views is not None:
        batch["crop_view"] = views
    return batch
