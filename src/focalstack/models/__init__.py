"""Learned models. ``MODELS`` maps a name to its class; ``build_model(name, **cfg)`` builds one;
``predict_batch`` runs a model on a batch of focal stacks without gradients."""

from __future__ import annotations

from typing import Sequence

import torch

from ..optics.camera import CameraBatch, FocalStackCamera
from .aifdepthnet import AiFDepthNet
from .common import count_parameters, depth_range_tensor
from .daifnet import DAIFNet
from .ddfs import DDFSNet
from .gurwolf import GurWolfNet

# name → class. Every model takes forward(frames [B,F,3,H,W], focus_distances_m [B,F], depth_range_m)
# → {"depth_m" [B,1,H,W], "aif" [B,3,H,W], ...}; optional keyword inputs are declared by class
# attributes: ``needs_camera = True`` → ``camera=`` CameraBatch (DDFS: PSFs need the lens),
# ``takes_aif_input = True`` → ``image=`` [B,3,H,W] (Gur & Wolf: single-image depth from the AIF).
MODELS: dict[str, type] = {"daifnet": DAIFNet, "aifdepthnet": AiFDepthNet, "ddfs": DDFSNet, "gurwolf": GurWolfNet}

__all__ = ["MODELS", "build_model", "predict_batch", "model_kwargs", "DAIFNet", "AiFDepthNet", "DDFSNet",
           "GurWolfNet", "count_parameters"]


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") and isinstance(model.module, torch.nn.Module) else model


def model_kwargs(model: torch.nn.Module, camera: CameraBatch | None = None, image: torch.Tensor | None = None) -> dict:
    """The optional forward keywords ``model`` declares: ``camera`` if it ``needs_camera`` (error if
    missing), ``image`` if it ``takes_aif_input`` and one is given (else the model makes its own)."""
    m = _unwrap(model)
    kw: dict = {}
    if getattr(m, "needs_camera", False):
        if camera is None:
            raise ValueError(f"model {type(m).__name__} needs the full camera (focal length, f-numbers, pixel "
                             "size), not only focus distances")
        kw["camera"] = camera
    if getattr(m, "takes_aif_input", False) and image is not None:
        kw["image"] = image
    return kw


def build_model(name: str = "daifnet", **cfg) -> torch.nn.Module:
    """A model by registry name with keyword config (e.g. ``width=16, levels=4``)."""
    try:
        cls = MODELS[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(sorted(MODELS))}") from None
    try:
        return cls(**cfg)
    except TypeError as e:  # an option this model does not have: one clear line, not a traceback
        raise ValueError(f"model {name!r}: {e}") from None


def predict_batch(model: torch.nn.Module, frames: torch.Tensor,
                  camera: FocalStackCamera | CameraBatch | Sequence[FocalStackCamera] | torch.Tensor,
                  depth_range=None, image: torch.Tensor | None = None) -> dict:
    """Depth and AIF for a batch, in eval mode, without gradients.

    Args:
        frames: [B,F,3,H,W] (or one stack [F,3,H,W]) in [0,1], on the model's device or CPU.
        camera: a FocalStackCamera (same for all samples), a list of them (one per sample), a
            CameraBatch, or the focus distances themselves ([B,F] or [F] tensor, metres).
        depth_range: (near, far) metres or [B,2]; default: the camera's ``effective_depth_range_m()``
            (required when ``camera`` is a CameraBatch or a tensor).
        image: [B,3,H,W] (or [3,H,W]) input image for models that take one (``takes_aif_input``).

    Models that ``needs_camera`` need ``camera`` as FocalStackCamera(s) or a CameraBatch.

    Returns: {"depth_m": [B,1,H,W] metres, "aif": [B,3,H,W] in [0,1]} (one stack in → batch of 1).
    """
    if frames.dim() == 4:
        frames = frames.unsqueeze(0)
    b, f = frames.shape[:2]
    p = next(model.parameters())
    frames = frames.to(device=p.device, dtype=torch.float32)
    if isinstance(camera, FocalStackCamera):
        camera = [camera] * b
    if isinstance(camera, (list, tuple)) and not all(isinstance(c, FocalStackCamera) for c in camera):
        camera = torch.as_tensor(camera, dtype=torch.float32)  # focus distances as numbers
    cam_batch = None
    if isinstance(camera, (list, tuple)):
        fd = torch.tensor([list(c.focus_distances_m) for c in camera], dtype=torch.float32)
        if depth_range is None:
            depth_range = torch.tensor([list(c.effective_depth_range_m()) for c in camera], dtype=torch.float32)
        if len(camera) == b:
            cam_batch = CameraBatch.from_cameras(camera, device=p.device)
    elif isinstance(camera, CameraBatch):
        fd = camera.focus_distances_m
        cam_batch = camera.to(p.device, torch.float32)
    else:
        fd = torch.as_tensor(camera, dtype=torch.float32)
    if depth_range is None:
        raise ValueError("predict_batch: depth_range is required with a CameraBatch or focus-distance tensor")
    fd = fd.to(p.device, torch.float32)
    if fd.dim() == 1:
        fd = fd.view(1, -1).expand(b, -1)
    if fd.shape != (b, f):
        raise ValueError(f"predict_batch: {f} frames but {fd.shape[-1]} focus distances")
    rng = depth_range_tensor(depth_range, b, p.device)
    if image is not None:
        image = (image.unsqueeze(0) if image.dim() == 3 else image).to(device=p.device, dtype=torch.float32)
    kw = model_kwargs(model, cam_batch, image)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(frames, fd, rng, **kw)
    finally:
        model.train(was_training)
    return {"depth_m": out["depth_m"], "aif": out["aif"]}

