"""Thin-lens optics: CoC, PSF width, focal-stack cameras and named presets."""

from .camera import CameraBatch, CameraError, FocalStackCamera, camera_tensors, coc_table, format_coc_table
from .presets import PRESETS, get_preset
from .thin_lens import DEFAULT_PSF_SCALE, ThinLens, coc_diameter_m

__all__ = ["CameraBatch", "camera_tensors", "ThinLens", "FocalStackCamera", "CameraError", "coc_table", "format_coc_table",
           "PRESETS", "get_preset", "DEFAULT_PSF_SCALE", "coc_diameter_m"]
