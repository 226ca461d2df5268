"""Learned models, one file each, on one contract (:mod:`focalstack.models.base`): a
:class:`FocalStackModel` with a typed options dataclass (``Config``) and the forward
``model(frames, camera, depth_range_m, image=None)``. ``MODELS`` maps a name to its class;
``build_model(name, **options)`` builds one; ``predict_batch`` runs a model on a batch of focal
stacks without gradients."""

from __future__ import annotations

from typing import Sequence

import torch

from ..optics.camera import CameraBatch, FocalStackCamera
from .aifdepthnet import AiFDepthNet, AiFDepthNetConfig
from .base import CropView, FocalStackModel, ModelConfig, PriorCache, StackInputs
from .common import count_parameters, depth_range_tensor
from .daifnet import DAIFNet, DAIFNetConfig
from .ddfs import DDFSConfig, DDFSNet
from .gurwolf import GurWolfConfig, GurWolfNet

# name → class; every one a FocalStackModel (forward(frames, camera, depth_range_m, image=None) → {"depth_m",
# "aif", ...}), options in its ``Config`` dataclass
MODELS: dict[str, type[FocalStackModel]] = {"daifnet": DAIFNet, "aifdepthnet": AiFDepthNet, "ddfs": DDFSNet,
                                            "gurwolf": GurWolfNet}

__all__ = ["MODELS", "model_class", "model_config", "full_options", "recorded_options",
           "build_model", "predict_batch", "FocalStackModel",
           "ModelConfig", "StackInputs", "CropView", "PriorCache", "DAIFNet", "DAIFNetConfig", "AiFDepthNet", "AiFDepthNetConfig", "DDFSNet",
           "DDFSConfig", "GurWolfNet", "GurWolfConfig", "count_parameters"]


def model_class(name: str) -> type[FocalStackModel]:
    """The registered model class ``name`` (KeyError naming the known ones)."""
    try:
        return MODELS[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(sorted(MODELS))}") from None


def model_config(name: str, options: dict | None = None) -> ModelConfig:
    """The checked options of model ``name`` (ValueError naming the valid fields for an unknown key)."""
    return model_class(name).Config.from_options(options or {}, name)


def full_options(name: str, options: dict | None = None) -> dict:
    """Every option of model ``name`` (its ``Config`` as a dict): ``options`` over the defaults."""
    return model_config(name, options).to_dict()


def recorded_options(name: str, recorded: dict | None = None) -> dict:
    """Every option of a model of ``name`` saved with the options ``recorded`` (a checkpoint sidecar's
    or a run's config): those, the ones it predates at the values it was made with
    (:meth:`ModelConfig.checkpoint_options`), the rest at their defaults."""
    return full_options(name, model_class(name).Config.checkpoint_options(recorded or {}))


def build_model(name: str = "daifnet", **options) -> FocalStackModel:
    """A model by registry name with keyword options (fields of its ``Config``, e.g. ``width=16, levels=4``)."""
    return model_class(name)(model_config(name, options))


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
        image: [B,3,H,W] (or [3,H,W]) input image for models that take one (``image_input``).

    Models that read the lens need ``camera`` as FocalStackCamera(s) or a CameraBatch: with focus
    distances alone they stop with one line.

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
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(frames, cam_batch if cam_batch is not None else fd, rng, image=image)
    finally:
        model.train(was_training)
    return {"depth_m": out["depth_m"], "aif": out["aif"]}

