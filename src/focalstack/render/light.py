"""Light: a lens blurs radiance, the pipeline's images hold encoded values.

Optical blur adds up radiance — a defocused pixel is the PSF-weighted mean of scene *radiance*
(linear light), not of its gamma-encoded values. Frames from cameras and phones are sRGB-encoded
(IEC 61966-2-1), and every image tensor in focalstack is in the working encoding
(:data:`focalstack.data.encoding.WORKING_ENCODING`). So every operation that models the optics —
:func:`focalstack.render.render_stack` (which the training loss, the optimiser, the synthesis and the
writer's re-rendering all go through), the unknown-focus renderer of :mod:`focalstack.optimize`,
the layered synthesis, and the relative-blur cost volume of DFD and the camera-aware DAIF-Net —
decodes to linear light, blurs, and encodes back: :func:`to_linear` … :func:`from_linear`. Image
processing that models no optics (focus measures, fusion, SSIM, smoothness) stays on the encoded
values.

:data:`PHYSICS_LIGHT` is the switch: ``"linear"`` (the default) is the physical model; ``"encoded"``
blurs the encoded values directly — the convention of focalstack before issue 13, kept selectable
(``FOCALSTACK_PHYSICS_LIGHT=encoded``) to reproduce results recorded under it. Datasets written by
``synth``, checkpoints, training runs and teacher labels record the light they were made in (absent
= "encoded"): a dataset or run is never resumed in the other light, and a checkpoint made in the
other light loads with a one-line warning. Bright-on-dark edges show the difference: blurred in
linear light a step from sRGB 0.05 to 1.0 reads 0.74 at the edge centre, blurred as encoded values
0.53.
"""

from __future__ import annotations

import os

__all__ = ["PHYSICS_LIGHT", "LIGHTS", "RECORDED_DEFAULT", "made_in", "to_linear", "from_linear", "resize_stack"]

LIGHTS = ("linear", "encoded")
RECORDED_DEFAULT = "encoded"
"""The light of a dataset, checkpoint or run that records none: everything made before the switch."""
PHYSICS_LIGHT = os.environ.get("FOCALSTACK_PHYSICS_LIGHT", "linear")
"""What the optical operations blur: "linear" (radiance) or "encoded" (the working encoding's values);
the environment variable ``FOCALSTACK_PHYSICS_LIGHT`` sets it for a whole run (e.g. a benchmark
re-made in the other light; ``synth`` records it, so a dataset is never resumed in the other light)."""


def made_in(record: dict) -> str:
    """The light a dataset setting, checkpoint sidecar, training state or teacher record was made in
    (its ``"physics_light"``; :data:`RECORDED_DEFAULT` when it records none)."""
    return record.get("physics_light", RECORDED_DEFAULT)


def _active() -> bool:
    from ..data.encoding import WORKING_ENCODING
    if PHYSICS_LIGHT not in LIGHTS:
        raise ValueError(f"PHYSICS_LIGHT must be one of {LIGHTS}, got {PHYSICS_LIGHT!r}")
    return PHYSICS_LIGHT == "linear" and WORKING_ENCODING != "linear"


def to_linear(x):
    """Working-encoding values in [0,1] → the values the optics blur (linear light under
    ``PHYSICS_LIGHT = "linear"``, else unchanged). Differentiable (the sRGB curve's slope is bounded:
    its linear toe)."""
    if not _active():
        return x
    from ..data.encoding import srgb_to_linear
    return srgb_to_linear(x)


def from_linear(x):
    """The inverse of :func:`to_linear`."""
    if not _active():
        return x
    from ..data.encoding import linear_to_srgb
    return linear_to_srgb(x)


def resize_stack(frames, camera, scale: float):
    """(frames [F,3,h,w], camera) of a stack [F,3,H,W] resized by ``scale`` ∈ (0, 4]: resampled
    bilinearly (antialiased) in the light the optics blur — a pixel integrates radiance — and the
    camera's pixel pitch scaled with it (:meth:`focalstack.optics.FocalStackCamera.resized`), so the
    blur in pixels scales with the image."""
    import torch.nn.functional as F
    if not 0 < scale <= 4:
        raise ValueError(f"--scale must be in (0, 4], got {scale}")
    h, w = frames.shape[-2:]
    size = (max(8, round(h * scale)), max(8, round(w * scale)))
    out = from_linear(F.interpolate(to_linear(frames.float()), size=size, mode="bilinear", align_corners=False,
                                    antialias=True))
    return out, camera.resized(size[1] / w)
