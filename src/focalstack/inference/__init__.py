"""Inference: a trained or training-free method turns one focal stack into depth + AIF.

``METHODS`` is the explicit registry ``name → fn(sample: FocalStackSample, opts) -> Prediction``:
``dff``, ``dfd`` and ``optimize`` (training-free, :mod:`.methods`) and ``net`` (a trained model from a
checkpoint, with tiling and optional refinement, :mod:`.network`); ``METHOD_OPTIONS`` the typed
options each reads (:mod:`.options`, from which ``focalstack predict``'s flags are generated).
:func:`write_prediction` (:mod:`.writer`) writes the outputs of any method in one layout.
"""

from __future__ import annotations

from typing import Any, Callable

from ..data.format import FocalStackSample
from .methods import predict_dfd, predict_dff, predict_optimize
from .network import default_checkpoint, predict_net, run_network
from .options import (METHOD_OPTIONS, DFDOptions, DFFOptions, MethodOptions, NetOptions, OptimizeOptions,
                      PredictOptions, sample_focus_known)
from .prediction import Prediction
from .writer import render_prediction, write_prediction

__all__ = ["METHODS", "METHOD_OPTIONS", "get_method", "Prediction", "PredictOptions", "MethodOptions", "DFFOptions",
           "DFDOptions", "OptimizeOptions", "NetOptions", "predict_dff", "predict_dfd", "predict_optimize",
           "predict_net", "run_network", "default_checkpoint", "write_prediction", "render_prediction",
           "sample_focus_known"]

METHODS: dict[str, Callable[[FocalStackSample, Any], Prediction]] = {
    "dff": predict_dff,
    "dfd": predict_dfd,
    "optimize": predict_optimize,
    "net": predict_net,
}


def get_method(name: str) -> Callable[[FocalStackSample, Any], Prediction]:
    """The prediction function of a method name (one-line error naming the known ones)."""
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; available: {', '.join(sorted(METHODS))}") from None
