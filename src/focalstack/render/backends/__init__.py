"""Fused render backends, registered with :func:`focalstack.render.defocus.register_backend`.

* ``"triton"``: Triton kernels (:mod:`.triton_gpu`) for CUDA tensors; registered when the
  ``triton`` package is installed (extra ``gpu``), imported on first use.
* ``"cpu"``: numba kernels (:mod:`.cpu`) for CPU tensors; registered when numba imports.

``backend="auto"`` tries triton (CUDA tensors), then cpu (CPU tensors), then the reference.
"""

from __future__ import annotations

import importlib.util

from ..defocus import register_backend

__all__ = ["HAVE_NUMBA", "HAVE_TRITON"]

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
    register_backend("triton", _defocus_triton, available=_triton_available, auto_priority=10)

# --------------------------------------------------------------------------- numba (CPU)
try:
    from ._numba_cache import keyed_cache

    with keyed_cache():  # the kernels' cache folder follows all their sources (see _numba_cache)
        from . import cpu as _cpu
except ImportError:  # numba missing or broken: the reference serves CPU tensors
    _cpu = None
HAVE_NUMBA = _cpu is not None

if HAVE_NUMBA:
    register_backend("cpu", _cpu.defocus_cpu, available=_cpu.available, auto_priority=20)
