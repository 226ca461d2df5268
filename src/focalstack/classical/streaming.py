"""Depth from focus and all-in-focus fusion over frames read one at a time (photo-sized stacks).

:func:`focalstack.classical.depth_from_focus` holds the whole stack and its focus volume
([F,3,H,W] float32 plus [F,H,W] float64 and the frames' pyramids: ~50 bytes per pixel and frame,
about 36 GB for 30 frames of 24 MP). :func:`depth_from_focus_streaming` computes the same DFF with
memory O(H·W) whatever the frame count F, decoding each frame once, in focus order (far → near):

* the frame's focus measure; per pixel the running maximum, its index in focus order and the focus
  of its two neighbouring frames — the left one is the previous frame's (kept), the right one
  arrives with the next frame — which is all the sub-frame peak needs
  (:func:`focalstack.classical.dff.peak_vertex`, the same float64 formula); a running sum for the
  confidence; the measure itself goes to a temporary file (float32);
* the frame's Laplacian pyramid (:func:`focalstack.classical.fusion.pyramid_fusion`): per level the
  running maximum of the detail energy and the coefficient that won (strictly greater wins, so ties
  keep the earlier frame); the frame's coarsest Gaussian level is kept (1/1024 of the pixels);
* after the last frame, the coarsest level of the fusion from those, blended with the soft weights of
  the cached focus measures normalised by the per-pixel peak — one cheap pass over the cache.

The filters are OpenCV's (separable Gaussian and box means, 3-tap Laplacians, bilinear resizes with
the same half-pixel convention and replicated borders as the torch path), into work arrays
allocated once (a fresh 24 MP array costs as much in page faults as the filter that fills it), while
the next frame is decoded on a second thread: on 2 cores a 24 MP frame takes ~1 s in all, its
torch focus measure alone ~1.6 s. Measures other than ``lapm`` fall back to
:func:`focalstack.classical.focus_measure` on the one frame (same result, slower). The coarsest level's
weights are area-averaged before being normalised over the frames (area(w_k) / Σ_j area(w_j)), in
both paths (:func:`focalstack.classical.fusion.pyramid_fusion`), so that one pass suffices. On
stacks that fit in memory both paths agree to ~1e-6 in the AIF and < 1e-4 in inverse depth, argmax
flips aside at exact near-ties (tested); ``predict`` uses
this path only when the stack would not fit (:data:`STREAM_ABOVE_PIXEL_FRAMES`).
"""

from __future__ import annotations

import math
import tempfile
from typing import Callable

import numpy as np
import torch

from ..optics.camera import FocalStackCamera
from . import opencv_planes
from .dff import DFFResult, focus_order, peak_vertex, refine_inverse_depth
from .focus_measures import _LUMA as _LUMA_WEIGHTS, DEFAULT_MEASURE, DEFAULT_WINDOW, _gauss1d, focus_measure

__all__ = ["depth_from_focus_streaming", "STREAM_ABOVE_PIXEL_FRAMES"]

STREAM_ABOVE_PIXEL_FRAMES = 40_000_000
"""Stacks with more pixels × frames than this (e.g. 5 frames of 8 MP) go through the streaming
path in ``predict``: the in-memory DFF needs ~50 bytes per pixel-frame, ~2 GB here."""

_LUMA = np.array([_LUMA_WEIGHTS], np.float32)   # the torch path's Rec. 601 luma (to_grey)
_ONES3 = np.ones((1, 3), np.float32)
_PYR5 = np.array([1, 4, 6, 4, 1], np.float32) / 16.0
_ROWS = 512  # rows per chunk of the float64 peak fit (bounds its temporaries)


def _cv2():
    import cv2
    return cv2


class _Buffers:
    """Reused work arrays by name: a fresh 24 MP array costs its page faults on every first touch
    (~0.1 s per 288 MB, as much as the filter that fills it), so every per-frame temporary is
    allocated once per run."""

    def __init__(self):
        self._a: dict = {}

    def __call__(self, name: str, shape, dtype=np.float32) -> np.ndarray:
        a = self._a.get(name)
        if a is None or a.shape != tuple(shape) or a.dtype != dtype:
            a = self._a[name] = np.empty(shape, dtype)
        return a


def _as_hwc(img) -> np.ndarray:
    """[3,H,W] tensor or H×W×3 array → contiguous H×W×3 float32 array."""
    if isinstance(img, torch.Tensor):
        img = img.detach().to("cpu", torch.float32).permute(1, 2, 0).numpy()
    return np.ascontiguousarray(img, dtype=np.float32)


def _local_mean(x: np.ndarray, window: int, aggregate: str, out: np.ndarray) -> np.ndarray:
    """:func:`focalstack.classical.focus_measures.local_mean` of an H×W array (replicate border), into
    ``out``."""
    cv2 = _cv2()
    if window == 1:
        np.copyto(out, x)
    elif aggregate == "box":
        cv2.blur(x, (window, window), dst=out, borderType=cv2.BORDER_REPLICATE)
    elif aggregate == "gaussian":
        g = _gauss1d(window, torch.float32, "cpu").numpy()
        cv2.sepFilter2D(x, -1, g, g, dst=out, borderType=cv2.BORDER_REPLICATE)
    else:
        raise ValueError(f"aggregate must be 'box' or 'gaussian', got {aggregate!r}")
    return out


def _focus(x: np.ndarray, measure: str, window: int, aggregate: str, buf: _Buffers | None = None,
           out: np.ndarray | None = None) -> np.ndarray:
    """Focus measure of one H×W×3 frame → H×W float32 (lapm by OpenCV, others by the torch code);
    ``buf`` reuses temporaries, ``out`` receives the result."""
    cv2 = _cv2()
    if measure.lower() != "lapm":
        t = torch.from_numpy(x).permute(2, 0, 1).unsqueeze(0)
        r = focus_measure(t, measure, window, aggregate)[0, 0].numpy()
        if out is None:
            return r
        np.copyto(out, r)
        return out
    buf = buf or _Buffers()
    hw = x.shape[:2]
    g = cv2.transform(x, _LUMA, dst=buf("grey", hw))
    k = np.array([[-1.0, 2.0, -1.0]], np.float32)
    ml = cv2.filter2D(g, -1, k, dst=buf("lx", hw), borderType=cv2.BORDER_REPLICATE)
    ly = cv2.filter2D(g, -1, k.T, dst=buf("ly", hw), borderType=cv2.BORDER_REPLICATE)
    np.abs(ml, out=ml)
    np.abs(ly, out=ly)
    ml += ly
    out = _local_mean(ml, window, aggregate, buf("focus_out", hw) if out is None else out)
    return np.maximum(out, 0.0, out=out)


def _pyr_down(x: np.ndarray, buf: _Buffers | None = None, name: str = "") -> np.ndarray:
    """kornia's ``pyrdown`` (5×5 binomial blur, replicate border, bilinear to ⌊H/2⌋×⌊W/2⌋)."""
    cv2 = _cv2()
    buf = buf or _Buffers()
    h, w = x.shape[:2]
    # the blur shares the up-sampling buffer of its level ("up" + name): the pyramid is built before
    # the detail pass that reuses it
    b = cv2.sepFilter2D(x, -1, _PYR5, _PYR5, dst=buf("up" + name, x.shape), borderType=cv2.BORDER_REPLICATE)
    return cv2.resize(b, (w // 2, h // 2), dst=buf("pyr" + name, (h // 2, w // 2) + x.shape[2:]),
                      interpolation=cv2.INTER_LINEAR)


def _up(x: np.ndarray, hw, dst: np.ndarray | None = None) -> np.ndarray:
    """Bilinear, half-pixel centres (``F.interpolate(..., align_corners=False)``)."""
    if x.shape[:2] == tuple(hw):
        return x
    return _cv2().resize(x, (hw[1], hw[0]), dst=dst, interpolation=_cv2().INTER_LINEAR)


def _pyramid_levels(h: int, w: int) -> int:
    return max(1, min(5, int(math.floor(math.log2(min(h, w) / 8.0))) + 1))


def _area(x: np.ndarray, hw) -> np.ndarray:
    """``F.interpolate(mode="area")`` (adaptive average pooling) of an H×W array."""
    t = torch.from_numpy(x)[None, None]
    return torch.nn.functional.adaptive_avg_pool2d(t, tuple(hw))[0, 0].numpy()


def depth_from_focus_streaming(read_frame: Callable[[int], "torch.Tensor | np.ndarray"], camera: FocalStackCamera,
                               size_hw: tuple[int, int], measure: str = DEFAULT_MEASURE,
                               window: int = DEFAULT_WINDOW, aggregate: str = "gaussian",
                               interp: str = "parabolic", refine: str | None = "guided",
                               refine_radius: int | None = None, refine_eps: float = 1e-3,
                               temperature: float = 0.05, energy_window: int = 5,
                               progress: Callable[[int, int], None] | None = None,
                               frame_hook: Callable[[int, np.ndarray], None] | None = None) -> DFFResult:
    """Depth from focus + pyramid-fused AIF of a stack whose frames are read one at a time.

    Args:
        read_frame: camera frame index i → frame i, [3,H,W] tensor or H×W×3 array, float32 in [0,1]
            (the pipeline's working encoding); called once per frame, in focus order.
        camera: the stack's camera (focus distances in metres, one per frame).
        size_hw: (H, W) pixels of every frame (a frame of another size raises ValueError).
        measure, window, aggregate, interp, refine, refine_radius, refine_eps: as
            :func:`focalstack.classical.depth_from_focus` (``fusion`` is always "pyramid").
        progress: called as progress(done, F) after each frame.
        frame_hook: called as frame_hook(i, frame H×W×3) with every frame as it is read (e.g. to keep a
            downscaled copy without decoding the frame again).

    Returns:
        :class:`~focalstack.classical.DFFResult` with B = 1 and ``focus`` = None (the focus volume
        is what this path never holds).
    """
    from .dff import INTERPOLATIONS
    if interp not in INTERPOLATIONS:
        raise ValueError(f"interp must be one of {INTERPOLATIONS}, got {interp!r}")
    if refine not in (None, "none", "guided"):
        raise ValueError(f"refine must be 'guided' or None, got {refine!r}")
    nf = camera.num_frames
    h, w = (int(v) for v in size_hw)
    if nf > 255:
        raise ValueError(f"depth_from_focus_streaming: at most 255 frames, got {nf}")
    order = focus_order(camera)
    cv2 = _cv2()

    # frames are decoded one ahead on a second thread (decoding is single-threaded and releases
    # the GIL, so it overlaps the filters): at most two frames are alive at a time
    from concurrent.futures import ThreadPoolExecutor
    pool = ThreadPoolExecutor(1)
    pending = pool.submit(read_frame, order[0])

    with pool, tempfile.TemporaryFile(prefix="focalstack-focus-") as cache:
        buf = _Buffers()
        best = left = right = total = None
        prev, cur = np.empty((h, w), np.float32), np.empty((h, w), np.float32)
        kbest = np.zeros((h, w), np.uint8)                      # index in focus order
        levels = _pyramid_levels(h, w)
        # per level: the winning detail energy and coefficient (sizes as the pyramid will make them)
        sizes = [(h, w)]
        for _ in range(levels):
            if min(sizes[-1]) < 4:
                break
            sizes.append((sizes[-1][0] // 2, sizes[-1][1] // 2))
        best_e = [np.empty(sz, np.float32) for sz in sizes[:-1]]
        best_d = [np.empty(sz + (3,), np.float32) for sz in sizes[:-1]]
        tops: list = []
        for k, i in enumerate(order):
            x = _as_hwc(pending.result())
            if k + 1 < nf:
                pending = pool.submit(read_frame, order[k + 1])
            if x.shape != (h, w, 3):
                raise ValueError(f"frame {i}: size {x.shape[:2]} differs from the stack's {(h, w)}")
            if frame_hook:
                frame_hook(i, x)
            # focus: running peak and its neighbours (sorted order k)
            f = _focus(x, measure, window, aggregate, buf, out=cur)
            cache.write(memoryview(f).cast("B"))                            # for the base level's weights below
            if k == 0:
                best, left, right, total = f.copy(), f.copy(), f.copy(), f.copy()
            else:
                near = np.equal(kbest, k - 1, out=buf("near", (h, w), np.bool_)).view(np.uint8)
                cv2.copyTo(f, near, right)                      # right neighbour of last frame's peaks
                new = cv2.compare(f, best, cv2.CMP_GT, dst=buf("new", (h, w), np.uint8))  # strict: first max wins
                np.minimum(new, k, out=new)
                cv2.copyTo(prev, new, left)
                cv2.copyTo(f, new, right)                       # stays itself if this is the last frame
                cv2.copyTo(f, new, best)
                np.maximum(kbest, new, out=kbest)               # k exceeds every earlier index
                total += f
            prev, cur = f, prev
            # pyramid: running per-level maxima of the detail energy
            gauss = [x]
            for lvl in range(levels):
                if min(gauss[-1].shape[:2]) < 4:
                    break
                gauss.append(_pyr_down(gauss[-1], buf, str(lvl)))
            tops.append(gauss[-1].copy())
            for lvl in range(len(gauss) - 1):
                g = gauss[lvl]
                hw_l = g.shape[:2]
                up = buf(f"up{lvl}", g.shape)
                absd = cv2.absdiff(g, _up(gauss[lvl + 1], hw_l, dst=up), dst=up)
                energy = cv2.blur(cv2.transform(absd, _ONES3, dst=buf(f"esum{lvl}", hw_l)),
                                  (energy_window, energy_window), dst=best_e[lvl] if k == 0 else buf(f"e{lvl}", hw_l),
                                  borderType=cv2.BORDER_REPLICATE)
                up = _up(gauss[lvl + 1], hw_l, dst=up)           # again: cheaper than a second 3-channel buffer
                if k == 0:
                    cv2.subtract(g, up, dst=best_d[lvl])
                else:
                    new = cv2.compare(energy, best_e[lvl], cv2.CMP_GT, dst=buf(f"new{lvl}", hw_l, np.uint8))
                    cv2.copyTo(energy, new, best_e[lvl])        # where this frame wins (first max on ties)
                    cv2.subtract(g, up, dst=best_d[lvl], mask=new)
            del gauss, x
            if progress:
                progress(k + 1, nf)
        del prev, cur, best_e, buf

        # base level: soft weights of the cached focus, normalised by the per-pixel peak
        best_eps = best + np.float32(1e-12)
        cache.seek(0)
        base_num = base_den = None
        for k in range(nf):
            fk = np.fromfile(cache, np.float32, h * w).reshape(h, w)
            # softmax numerator over frames of focus / (peak · temperature), shifted by its maximum 1/T
            wgt = cv2.exp(cv2.subtract(cv2.divide(fk, best_eps, scale=1.0 / temperature), 1.0 / temperature))
            bw = _area(wgt, tops[k].shape[:2])[..., None]
            base_num = bw * tops[k] if base_num is None else base_num + bw * tops[k]
            base_den = bw if base_den is None else base_den + bw
        del best_eps, fk, wgt
        out = base_num / base_den
        for lvl in range(len(best_d) - 1, -1, -1):
            out = _up(out, best_d[lvl].shape[:2]) + best_d[lvl]
            best_d[lvl] = None
        aif = torch.from_numpy(np.clip(out, 0, 1)).permute(2, 0, 1).unsqueeze(0).contiguous()
        del out

    # sub-frame peak (float64 in row chunks, the in-memory path's formula)
    rho_sorted = torch.tensor([1.0 / camera.focus_distances_m[i] for i in order], dtype=torch.float64)
    rho = np.empty((h, w), np.float32)
    for r0 in range(0, h, _ROWS):
        sl = slice(r0, min(h, r0 + _ROWS))
        km = torch.from_numpy(kbest[sl]).long()
        if interp == "none" or nf < 3:
            rho[sl] = rho_sorted[km].numpy()
            continue
        ys = [torch.from_numpy(a[sl]).double() for a in (left, best, right)]
        if interp == "gaussian":
            ys = [torch.log(y.clamp_min(0) + 1e-12) for y in ys]
        rho[sl] = peak_vertex(*ys, km, rho_sorted, nf).numpy()
    del left, right
    peak = torch.from_numpy(best)
    tau = 0.1 * float(peak.flatten().median()) + 1e-12
    conf = ((peak - torch.from_numpy(total) / nf) / (peak + tau)).clamp(0, 1)
    del total, best, peak

    inv = torch.from_numpy(rho)[None, None]
    conf = conf[None, None]
    if refine == "guided" and nf > 1:
        inv = refine_inverse_depth(inv, conf, aif, refine_radius, refine_eps, box_mean=opencv_planes.box_mean)
    index = torch.tensor(order)[torch.from_numpy(kbest).long()][None, None]
    return DFFResult(depth_m=1.0 / inv.clamp_min(1e-6), inv_depth=inv, confidence=conf, index=index,
                     aif=aif, focus=None)
