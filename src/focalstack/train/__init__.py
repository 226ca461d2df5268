"""Training: ``TrainConfig``, ``train(cfg)`` / ``Trainer``, checkpoints (``load_model``) and
``predict_batch`` for running a trained model.

Quick use::

    from focalstack.train import load_model, predict_batch
    model, meta = load_model("runs/daifnet")            # best (else last) checkpoint of a run
    out = predict_batch(model, frames, camera)           # frames [B,F,3,H,W]; camera FocalStackCamera
    out["depth_m"], out["aif"]                           # [B,1,H,W] metres, [B,3,H,W] in [0,1]

The depth range a model was trained with is ``meta["depth_range_m"]`` (None = each camera's own
range); pass it as ``depth_range=`` when the camera does not carry one.
"""

from ..models import build_model, predict_batch
from ..checkpoint import load_model, resolve_checkpoint, weights_digest
from .config import TrainConfig

__all__ = ["TrainConfig", "Trainer", "train", "load_model", "predict_batch", "build_model",
           "resolve_checkpoint", "weights_digest", "choose_kernel_size"]


def __getattr__(name):  # the trainer pulls in the data pipeline: import it on first use
    if name in ("Trainer", "train", "choose_kernel_size"):
        from . import trainer
        return getattr(trainer, name)
    raise AttributeError(name)
