"""Differentiable defocus rendering: ``defocus`` (one image, per-pixel σ) and ``render_stack``."""

from .defocus import available_backends, defocus, pick_backend, register_backend
from .light import PHYSICS_LIGHT, from_linear, to_linear
from .psf import SIGMA_MIN_PX, support_radius_px, window_size_px
from .reference import defocus_reference
from .stack import render_stack

__all__ = ["defocus", "render_stack", "defocus_reference", "available_backends", "pick_backend",
           "register_backend", "SIGMA_MIN_PX", "support_radius_px", "window_size_px", "PHYSICS_LIGHT", "to_linear",
           "from_linear"]
