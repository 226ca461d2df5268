"""Fused render backends. ``FUSED_BACKENDS`` lists them; :mod:`focalstack.render.defocus`
registers that list on first use (this package does not import ``defocus``: no import cycle).

* ``"triton"``: Triton kernels (:mod:`.triton_gpu`) for CUDA tensors; registered when the
  ``triton`` package is installed (extra ``gpu``), imported on first use.
* ``"cpu"``: numba kernels (:mod:`.cpu`) for CPU tensors; registered when numba imports.

``backend="auto"`` tries triton (CUDA tensors), then cpu (CPU tensors), then the reference.
"""

from __future__ import annotations

import importlib.util

__all__ = ["HAVE_NUMBA", "HAVE_TRITON", "FUSED_BACKENDS"]

# (name, fn(image, sigma, radius, psf), available(image) -> bool, "auto" priority: lower first)
FUSED_BACKENDS: list[tuple] = []

# --------------------------------------------------------------------------- triton (CUDA)
HAVE_TRITON = importlib.util.find_spec("triton") is not None
_triton_state: dict = {}


def _triton_module():
    """The triton_gpu module, imported once (None if triton fails to import)."""
    if "mod" not in _triton_state:
        try:
            from . import triton_gpu
        except Exception:  # noqa: BLE001 - a broken triton install must not break rendering
            triton_gpu = None
        _triton_state["mod"] = triton_gpu
    return _triton_state["mod"]


def _triton_available(image) -> bool:
    return image.device.type == "cuda" and _triton_module() is not None


def _defocus_triton(image, sigma, radius, psf):
    mod = _triton_module()
    if mod is None:
        raise RuntimeError("defocus backend 'triton': the triton package failed to import")
    return mod.defocus_triton(image, sigma, radius, psf)


if HAVE_TRITON:
    FUSED_BACKENDS.append(("triton", _defocus_triton, _triton_available, 10))

# --------------------------------------------------------------------------- numba (CPU)
try:
    from ._numba_cache import keyed_cache

    with keyed_cache():  # the kernels' cache folder follows all their sources (see _numba_cache)
        from . import cpu as _cpu
except ImportError:  # numba missing or broken: the reference serves CPU tensors
    _cpu = None
HAVE_NUMBA = _cpu is not None

if HAVE_NUMBA:
    FUSED_BACKENDS.append(("cpu", _cpu.defocus_cpu, _cpu.available, 20))
