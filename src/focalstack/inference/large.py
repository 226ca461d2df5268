"""Photo-sized stacks: every method in memory O(H·W), whatever the number of frames.

A stack is *photo-sized* when its pixels × frames exceed
:data:`focalstack.classical.STREAM_ABOVE_PIXEL_FRAMES` (e.g. 5 frames of 8 MP): holding it as float
frames would take F·H·W·12 bytes (8.6 GB for 30 frames of 24 MP) and every method several times that.
:func:`predict_large` never holds the stack:

1. one streaming pass over the frame files (:func:`focalstack.classical.depth_from_focus_streaming`):
   the full-resolution DFF depth and the pyramid-fused AIF, each frame decoded once; for the other
   methods each frame is also area-downscaled as it passes, to the *working size*;
2. ``dff``: that DFF is the result. ``dfd``, ``optimize``, ``net`` (with ``--refine``) run on the
   working-size stack (long side ≤ :data:`WORK_MAX_SIDE_PX`, pixels × frames ≤
   :data:`WORK_MAX_PIXEL_FRAMES`) with the camera's pixel pitch scaled to match — the defocus blur in
   pixels shrinks with the image, so it stays inside the renderer's window and the range the models
   were trained on (at 24 MP a real lens blurs by tens of pixels); their depth is brought back to full
   resolution by guided upsampling of inverse depth (:func:`focalstack.classical.guided_upsample`, the
   fused AIF as guide: edges from the photo, values from the method);
3. the AIF is the full-resolution fusion of step 1 for every method (the methods' own AIF exists only
   at the working size). The re-rendering error in meta.json is the method's own, at the working size
   (re-rendering 24 MP frames with tens of pixels of blur is what this path avoids).
"""

from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F

from ..data.format import SampleFiles
from .options import DFFOptions
from .prediction import Prediction

__all__ = ["is_photo_sized", "working_size", "predict_large", "WORK_MAX_SIDE_PX", "WORK_MAX_PIXEL_FRAMES"]

WORK_MAX_SIDE_PX = 1024
"""Long side (px) of the stack that dfd, optimize and net see on a photo-sized input."""
WORK_MAX_PIXEL_FRAMES = 8_000_000
"""… and its pixels × frames at most this (30 frames: ~0.27 MP each), so their memory stays bounded
(DAIF-Net keeps per-frame features at full working size: ~4 GB at 1.2e7 pixel-frames, 30 frames)."""


def is_photo_sized(num_frames: int, size_hw: tuple[int, int]) -> bool:
    """Whether a stack goes through :func:`predict_large` (pixels × frames above the threshold)."""
    from ..classical.streaming import STREAM_ABOVE_PIXEL_FRAMES
    return num_frames * size_hw[0] * size_hw[1] > STREAM_ABOVE_PIXEL_FRAMES


def working_size(num_frames: int, size_hw: tuple[int, int]) -> tuple[int, int]:
    """(h, w) px of the working-size stack: the aspect kept, long side ≤ :data:`WORK_MAX_SIDE_PX`,
    pixels × frames ≤ :data:`WORK_MAX_PIXEL_FRAMES`, never upscaled."""
    h, w = size_hw
    s = min(1.0, WORK_MAX_SIDE_PX / max(h, w), math.sqrt(WORK_MAX_PIXEL_FRAMES / (num_frames * h * w)))
    return max(8, round(h * s)), max(8, round(w * s))


def predict_large(files: SampleFiles, method: str, opts=None, progress: bool = False) -> Prediction:
    """Depth [H,W] + AIF [3,H,W] of a photo-sized stack at full resolution (module doc); ``method``
    one of ``focalstack.inference.METHODS``, ``opts`` its options (as for the in-memory methods)."""
    import cv2
    from tqdm import tqdm

    from ..classical import depth_from_focus_streaming, guided_upsample, to_grey
    from ..classical import opencv_planes
    from ..render import from_linear, to_linear
    from . import get_method
    from .methods import check_method, dff_prediction

    fn = get_method(method)
    check_method(files, method)            # refused before the frames are streamed
    o = DFFOptions.of(opts)
    nf, (h, w) = files.num_frames, files.size_hw
    work_hw = working_size(nf, (h, w))
    small_frames: dict = {}

    def keep_small(i, x):
        # a working-size pixel integrates the radiance of the photo's pixels: area mean in the light the
        # optics blur (focalstack.render.light), as a camera with larger pixels would record it
        lin = to_linear(torch.from_numpy(x)).numpy()
        small = cv2.resize(lin, (work_hw[1], work_hw[0]), interpolation=cv2.INTER_AREA)
        small_frames[i] = from_linear(torch.from_numpy(small)).permute(2, 0, 1).contiguous()

    bar = tqdm(total=nf, desc="stream frames", unit="frame", leave=False, disable=None if progress else True)
    t0 = time.perf_counter()
    try:
        r = depth_from_focus_streaming(files.read_frame, files.camera, (h, w), measure=o.measure, window=o.window,
                                       interp=o.interp, refine="guided" if o.guided_filter else None,
                                       progress=lambda done, total: bar.update(1),
                                       frame_hook=None if method == "dff" else keep_small)
    finally:
        bar.close()
    t_stream = time.perf_counter() - t0
    info = {"photo_sized": {"size_hw": [h, w], "streamed_seconds": t_stream}}
    if method == "dff":
        pred = dff_prediction(r, files, o, t_stream)
        pred.extras.update(info)
        return pred

    aif = r.aif
    del r                                   # the full-resolution DFF maps (~0.6 GB at 24 MP) are not used
    small = files.downscaled(work_hw, small_frames)
    small_frames.clear()
    pred = fn(small, opts)
    del small
    kind = pred.depth_kind
    d = pred.depth_m.float()[None, None]
    src = 1.0 / d.clamp_min(1e-6) if kind == "metric" else d          # upsample inverse depth (blur is linear in it)
    lo, hi = float(src.min()), float(src.max())
    span = max(hi - lo, 1e-12)
    guide = to_grey(aif)
    guide_low = F.interpolate(guide, size=work_hw, mode="area")
    up = guided_upsample((src - lo) / span, guide_low, guide, box_mean=opencv_planes.box_mean)
    up = up.clamp_(0, 1).mul_(span).add_(lo)
    depth = 1.0 / up if kind == "metric" else up
    extras = {k: v for k, v in pred.extras.items() if k != "rendered"}
    info["photo_sized"].update(working_size_hw=list(work_hw), aif="full-resolution pyramid fusion of the streamed "
                               "frames (the method's own AIF is at the working size)",
                               recon="recon_before/recon_after, where given, are at the working size")
    extras.update(info, seconds_method=time.perf_counter() - t0)
    return Prediction(depth[0, 0], aif[0], extras)
