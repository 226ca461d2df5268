"""A minimal camera RAW file for the tests: a Bayer (CFA, RGGB) DNG written byte by byte, with the
DNG tags LibRaw needs (DNGVersion, CFARepeatPatternDim/CFAPattern, BlackLevel, WhiteLevel,
ColorMatrix1, AsShotNeutral, UniqueCameraModel, Make/Model) and an EXIF IFD (FocalLength, FNumber,
FocalPlaneXResolution). tifffile will not write the EXIF IFD pointer, hence the 60 lines.

The camera's colour space is linear sRGB (ColorMatrix1 = XYZ → linear sRGB) and the as-shot
illuminant scales the channels by ``neutral``: a scene of linear RGB values ``s`` is recorded as
``black + s·neutral·(white − black)``, so LibRaw with the camera white balance, no gamma and no
auto-brightening must give back ``s``.
"""

from __future__ import annotations

import struct

import numpy as np

# linear sRGB → XYZ (D65); its inverse is the DNG ColorMatrix1 (XYZ → camera) of a camera that records linear sRGB
SRGB_TO_XYZ = np.array([[0.4124564, 0.3575761, 0.1804375],
                        [0.2126729, 0.7151522, 0.0721750],
                        [0.0193339, 0.1191920, 0.9503041]])
BLACK, WHITE = 256, 4095
NEUTRAL = (0.5, 1.0, 0.8)

_FMT = {1: "B", 2: "B", 3: "H", 4: "I", 5: "II", 10: "ii"}   # BYTE ASCII SHORT LONG RATIONAL SRATIONAL


def _rat(x: float, den: int = 1_000_000) -> tuple[int, int]:
    return int(round(x * den)), den


def _ifd(entries: dict, start: int) -> bytes:
    """One little-endian IFD at file offset ``start`` ({tag: (type, value(s))}), its values after it."""
    items = sorted(entries.items())
    head, data = struct.pack("<H", len(items)), b""
    data_off = start + 2 + 12 * len(items) + 4
    for tag, (typ, vals) in items:
        if typ == 2:
            raw = vals.encode() + b"\0"
            count = len(raw)
        else:
            vals = list(vals) if isinstance(vals, (list, tuple)) else [vals]
            raw = b"".join(struct.pack("<" + _FMT[typ], *(v if isinstance(v, tuple) else (v,))) for v in vals)
            count = len(vals)
        if len(raw) <= 4:
            head += struct.pack("<HHI", tag, typ, count) + raw.ljust(4, b"\0")
        else:
            head += struct.pack("<HHII", tag, typ, count, data_off + len(data))
            data += raw + b"\0" * (len(raw) % 2)
    return head + struct.pack("<I", 0) + data


def mosaic(scene: np.ndarray, neutral=NEUTRAL) -> np.ndarray:
    """Linear scene RGB [H,W,3] in [0,1] (H, W even) → the RGGB sensor values (uint16, BLACK..WHITE)."""
    cam = np.clip(np.asarray(scene, np.float64) * np.asarray(neutral), 0, 1)
    cfa = np.empty(cam.shape[:2])
    cfa[0::2, 0::2] = cam[0::2, 0::2, 0]
    cfa[0::2, 1::2] = cam[0::2, 1::2, 1]
    cfa[1::2, 0::2] = cam[1::2, 0::2, 1]
    cfa[1::2, 1::2] = cam[1::2, 1::2, 2]
    return np.round(BLACK + cfa * (WHITE - BLACK)).astype(np.uint16)


def write_dng(path, scene: np.ndarray, focal_mm: float | None = 12.0, f_number: float | None = 2.0,
              pixel_um: float | None = 15.0, neutral=NEUTRAL) -> None:
    """Write ``scene`` (linear RGB [H,W,3] in [0,1], H and W even) as a CFA DNG with EXIF lens values."""
    cfa = mosaic(scene, neutral)
    h, w = cfa.shape
    pix = cfa.astype("<u2").tobytes()
    exif = {}
    if focal_mm:
        exif[37386] = (5, [_rat(focal_mm, 1000)])                         # FocalLength
    if f_number:
        exif[33437] = (5, [_rat(f_number, 1000)])                         # FNumber
    if pixel_um:
        exif[41486] = (5, [_rat(1000.0 / pixel_um, 1000)])                # FocalPlaneXResolution (px per mm)
        exif[41488] = (3, 4)                                              # FocalPlaneResolutionUnit: mm
    ifd0 = {254: (4, 0), 256: (4, w), 257: (4, h), 258: (3, 16), 259: (3, 1), 262: (3, 32803),
            271: (2, "Focalstack"), 272: (2, "Test"), 273: (4, 8), 277: (3, 1), 278: (4, h), 279: (4, len(pix)),
            284: (3, 1), 33421: (3, [2, 2]), 33422: (1, [0, 1, 1, 2]), 50706: (1, [1, 4, 0, 0]),
            50707: (1, [1, 1, 0, 0]), 50708: (2, "Focalstack Test"), 50710: (1, [0, 1, 2]), 50711: (3, 1),
            50714: (3, BLACK), 50717: (3, WHITE),
            50721: (10, [_rat(x) for x in np.linalg.inv(SRGB_TO_XYZ).ravel()]),   # ColorMatrix1
            50728: (5, [_rat(x) for x in neutral]), 50778: (3, 21)}              # AsShotNeutral, D65
    ifd0_off = 8 + len(pix) + len(pix) % 2
    if exif:
        ifd0[34665] = (4, 0)
        ifd0[34665] = (4, ifd0_off + len(_ifd(ifd0, ifd0_off)))            # the EXIF IFD follows IFD0
    out = b"II*\0" + struct.pack("<I", ifd0_off) + pix + b"\0" * (len(pix) % 2) + _ifd(ifd0, ifd0_off)
    if exif:
        out += _ifd(exif, len(out))
    with open(path, "wb") as f:
        f.write(out)
