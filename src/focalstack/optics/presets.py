"""Named cameras of the datasets this field uses, each with its source.

Pixel sizes are those of the images as the datasets ship them (or as the paper renders them);
use :meth:`FocalStackCamera.resized` after resizing images.
"""

from __future__ import annotations

from .camera import FocalStackCamera
from .thin_lens import ThinLens

PRESETS: dict[str, FocalStackCamera] = {
    # DefocusNet release (Maximov et al. 2020; dvl-tum/defocus-net config): f = 2.9 mm, f/1,
    # sensor width 3.1 mm over 256 px (DDFS compute_cost_volume_scaling.py: 3.0999999e-3 m).
    "defocusnet": FocalStackCamera(
        ThinLens(2.9e-3, 1.0, 3.1e-3 / 256), (0.1, 0.15, 0.3, 0.7, 1.5), depth_range_m=(0.1, 3.0),
        source="DefocusNet release: f=2.9 mm, f/1, 3.1 mm sensor / 256 px, focus 0.1/0.15/0.3/0.7/1.5 m"),
    # The core paper's DefocusNet re-render (Si et al. 2023; DEReD utils/data_config.py).
    "defocusnet_dered": FocalStackCamera(
        ThinLens(7.2e-3, 1.2, 5.6e-6), (0.3, 0.45, 0.75, 1.2, 1.8), depth_range_m=(0.1, 3.0),
        source="Si et al. 2023 DefocusNet re-render: f=7.2 mm, f/1.2, 5.6 µm, focus 0.3/0.45/0.75/1.2/1.8 m"),
    # The core paper's NYUv2 synthesis (DEReD utils/gen_nyuv2_defocus.py, confirmed by the author
    # in DEReD issue #5): 320×240 images.
    "nyuv2_dered": FocalStackCamera(
        ThinLens(50e-3, 8.0, 12e-6), (1.0, 1.5, 2.5, 4.0, 6.0), depth_range_m=(0.1, 10.0),
        source="Si et al. 2023 NYUv2 synthesis: f=50 mm, f/8, 12 µm at 320x240, focus 1/1.5/2.5/4/6 m"),
    # The DSLR indoor set (Carvalho et al. 2018): 35 mm lens, focus about 1.7 m per the dataset's
    # repository script; 36 µm pixels at 645×432 is APPROXIMATE (a full-frame sensor downsampled).
    "dslr_indoor": FocalStackCamera(
        ThinLens(35e-3, 2.8, 36e-6), (1.7, 1.7), f_numbers=(2.8, 8.0), depth_range_m=(0.5, 10.0),
        source="Carvalho et al. 2018 indoor DSLR: 35 mm, f/2.8 + f/8 at focus ~1.7 m, ~36 µm px at 645x432 (approximate)"),
}

# The procedural default used by `focalstack synth` / `demo`: a phone-like lens whose blur is
# distinguishable over 0.5–4 m yet stays ≤ 8 px CoC (σ ≤ 2 px), so a 13×13 window holds it and
# CPU training stays fast; the frames are spread roughly evenly in inverse depth.
PRESETS["procedural"] = FocalStackCamera(
    ThinLens(12e-3, 2.0, 15e-6), (0.6, 0.85, 1.2, 1.8, 3.0), depth_range_m=(0.5, 4.0),
    source="focalstack procedural default: f=12 mm, f/2, 15 µm px, focus 0.6/0.85/1.2/1.8/3.0 m, depth 0.5-4 m")


def get_preset(name: str) -> FocalStackCamera:
    try:
        return PRESETS[name]
    except KeyError:
        raise KeyError(f"unknown camera preset {name!r}; known: {', '.join(sorted(PRESETS))}") from None
