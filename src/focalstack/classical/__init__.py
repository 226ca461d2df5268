"""Classical (training-free) focal-stack processing: focus measures, depth from focus, AIF fusion."""

from .dff import (DFFResult, depth_from_focus, focus_confidence, focus_order, frame_position_to_inverse_depth,
                  guided_filter, guided_upsample, refine_inverse_depth, subframe_peak)
from .focus_measures import DEFAULT_MEASURE, DEFAULT_WINDOW, FAMILIES, FOCUS_MEASURES, focus_measure, local_mean, to_grey
from .fusion import FUSIONS, fuse, pyramid_fusion, soft_fusion, soft_weights
from .streaming import STREAM_ABOVE_PIXEL_FRAMES, depth_from_focus_streaming

__all__ = ["FOCUS_MEASURES", "FAMILIES", "focus_measure", "local_mean", "to_grey", "DEFAULT_MEASURE", "DEFAULT_WINDOW",
           "DFFResult", "depth_from_focus", "focus_order", "frame_position_to_inverse_depth", "subframe_peak",
           "focus_confidence", "guided_filter", "guided_upsample", "refine_inverse_depth",
           "depth_from_focus_streaming", "STREAM_ABOVE_PIXEL_FRAMES",
           "FUSIONS", "fuse", "soft_fusion", "pyramid_fusion", "soft_weights"]
