"""Pixel encodings of a sample's image files, and the ONE place where they meet the pipeline.

A sample's ``camera.json`` says how its image files (frames and aif.png) encode light:

* ``"srgb"`` (the default when the key is absent): sRGB-encoded values in [0,1] — 8- or 16-bit
  PNG/JPEG/TIFF as cameras, phones and the synthesis write them;
* ``"linear"``: values proportional to scene radiance (linear light) in [0,1] — 16-bit frames that
  ``focalstack import`` writes from camera RAW files (demosaicked, camera white balance, no gamma,
  no auto-brightening; 1.0 = the sensor's white level after white balance).

**The pipeline's working encoding** (:data:`WORKING_ENCODING`) is the encoding of every tensor
between loading and writing: the renderer, the losses, the networks and the classical methods all
see frames in it. Today it is ``"srgb"`` — every model, benchmark and shipped checkpoint was made on
sRGB-encoded frames — so linear frames are gamma-encoded once, at load time
(:func:`to_working`, called by :func:`focalstack.data.format.load_sample`), and converted back
where a linear file is written (:func:`from_working`: ``save_sample`` of a linear sample, the
16-bit linear ``aif.tif`` of ``predict``).

The defocus model itself is physical only in linear light (a lens blurs radiance, not its gamma
encoding): every optical operation decodes the working encoding to linear light, blurs and encodes
back (:mod:`focalstack.render.light`, switched by its ``PHYSICS_LIGHT``), while the tensors between
loading and writing stay in the working encoding — so networks, focus measures, fusion and the
photometric loss see the values the files hold.

All functions take tensors or numpy arrays of any shape, values in [0,1] (clamped), and return the
same type; the transfer function is IEC 61966-2-1 (sRGB), piecewise: linear segment below
0.0031308 (linear) / 0.04045 (encoded), 2.4 power above.
"""

from __future__ import annotations

from ..optics.camera import DEFAULT_ENCODING, ENCODINGS

__all__ = ["ENCODINGS", "DEFAULT_ENCODING", "WORKING_ENCODING", "srgb_to_linear", "linear_to_srgb", "to_working",
           "from_working", "convert"]

WORKING_ENCODING = "srgb"
"""The encoding of every image tensor inside the pipeline (see the module doc)."""


def srgb_to_linear(x):
    """sRGB-encoded values in [0,1] → linear light in [0,1] (IEC 61966-2-1 decoding, clamped; tensors
    or numpy). float32 CPU tensors go through the fused op of :mod:`focalstack.srgb` (within 4e-6 of
    the formula), the rest through the formula itself (:func:`focalstack.srgb.exact_decode`)."""
    from .. import srgb
    return srgb.decode(x) if srgb.fused_ok(x) else srgb.exact_decode(x)


def linear_to_srgb(x):
    """Linear light in [0,1] → sRGB-encoded values in [0,1] (IEC 61966-2-1 encoding; as
    :func:`srgb_to_linear`)."""
    from .. import srgb
    return srgb.encode(x) if srgb.fused_ok(x) else srgb.exact_encode(x)


def convert(x, src: str, dst: str):
    """Values in encoding ``src`` → encoding ``dst`` (both in :data:`ENCODINGS`; identity when equal)."""
    for e in (src, dst):
        if e not in ENCODINGS:
            raise ValueError(f"unknown pixel encoding {e!r}; expected one of {', '.join(ENCODINGS)}")
    if src == dst:
        return x
    return linear_to_srgb(x) if src == "linear" else srgb_to_linear(x)


def to_working(x, encoding: str):
    """Image values as stored in a file of ``encoding`` → the pipeline's working encoding.
    The one conversion at load time (see the module doc)."""
    return convert(x, encoding, WORKING_ENCODING)


def from_working(x, encoding: str):
    """Pipeline values (working encoding) → values to store in a file of ``encoding``."""
    return convert(x, WORKING_ENCODING, encoding)
