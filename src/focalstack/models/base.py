"""The model contract: every learned model is a :class:`FocalStackModel` with a typed
:class:`ModelConfig` dataclass and one forward signature.

``model(frames, camera, depth_range_m, image=None, view=None)``:

* ``frames`` [B,F,3,H,W] in [0,1] (one stack [F,3,H,W] is not accepted here: see
  :func:`focalstack.models.predict_batch`);
* ``camera`` — the batch's :class:`~focalstack.optics.CameraBatch` (focus distances, per-frame
  f-numbers, focal length, pixel size, PSF scale). Models that read only the focus distances also
  accept those alone ([B,F] or [F] metres); a model that needs the lens then stops with one line
  (:meth:`StackInputs.lens`);
* ``depth_range_m`` — (near, far) metres or a per-sample [B,2] tensor;
* ``image`` — [B,3,H,W] in [0,1], the single input image of a model whose depth comes from one
  image (:attr:`FocalStackModel.image_input`, Gur & Wolf: the sample's AIF in training); other
  models ignore it;
* ``view`` — a :class:`CropView`: in training, the whole stack each crop was cut from and where.
  A model whose input has a prior over the whole image (DAIF-Net's cost volume, aggregated over
  up to 0.4·min(H,W)) computes it there and crops it, so a crop reads what ``predict`` gives
  those pixels; other models ignore it.

Returns a dict with at least ``"depth_m"`` [B,1,H,W] (metres, inside the range) and ``"aif"``
[B,3,H,W]. The base class checks and normalises the inputs once (:class:`StackInputs`) and hands
them to the model's :meth:`FocalStackModel.run`, so every caller — trainer, predictor,
benchmarks — calls every model the same way, with the whole camera.

``ModelConfig`` subclasses are the models' options: ``build_model(name, **options)``, the
checkpoint sidecar's ``cfg`` and ``focalstack train --model-opt KEY=VALUE`` (typed by the field,
:meth:`ModelConfig.parse_option`) all go through them; an unknown option is one line naming the
valid ones.
"""

from __future__ import annotations

import json
import typing
from abc import ABC, abstractmethod
from dataclasses import MISSING, asdict, dataclass, fields
from typing import Any, ClassVar, Mapping

import torch
import torch.nn as nn

from ..optics.camera import CameraBatch
from .common import depth_range_tensor

__all__ = ["ModelConfig", "FocalStackModel", "StackInputs", "CropView", "PriorCache"]


@dataclass(frozen=True)
class ModelConfig:
    """Base of the per-model option dataclasses (fields with defaults; ``__post_init__`` checks
    values and raises ValueError naming the model). A field whose metadata has ``"choices"`` is
    checked here, for every model; a subclass's ``__post_init__`` calls this one, then checks its
    numbers."""

    # options a checkpoint made before they existed does not record, and the value that rebuilds it
    # (a new default may differ from what old weights were trained with); see :meth:`checkpoint_options`
    ABSENT_IN_OLD_CHECKPOINTS: ClassVar[dict] = {}

    def __post_init__(self):
        name = type(self).__name__.removesuffix("Config")
        for f in fields(self):
            choices = f.metadata.get("choices")
            if choices is not None and getattr(self, f.name) not in choices:
                raise ValueError(f"{name}: {f.name} must be one of {', '.join(map(str, choices))}, "
                                 f"got {getattr(self, f.name)!r}")

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {f.name: f.default for f in fields(cls) if f.default is not MISSING}

    @classmethod
    def check_keys(cls, options: Mapping[str, Any], model: str) -> None:
        """One line naming the valid options if ``options`` holds a key that is not a field."""
        names = cls.field_names()
        unknown = [k for k in options if k not in names]
        if unknown:
            raise ValueError(f"model {model!r} has no option {', '.join(map(repr, unknown))}; "
                             f"valid: {', '.join(names)}")

    @classmethod
    def from_options(cls, options: Mapping[str, Any], model: str = "") -> "ModelConfig":
        cls.check_keys(options, model or cls.__name__)
        return cls(**dict(options))

    @classmethod
    def parse_option(cls, text: str, model: str = "") -> tuple[str, Any]:
        """``KEY=VALUE`` → (key, value typed by the field: int, float, bool, str; JSON otherwise)."""
        key, sep, val = text.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"--model-opt expects KEY=VALUE, got {text!r}")
        cls.check_keys({key: None}, model or cls.__name__)
        typ = typing.get_type_hints(cls)[key]
        val = val.strip()
        try:
            if typ is bool:
                low = val.lower()
                if low not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError
                return key, low in ("true", "1", "yes")
            if typ is int:
                return key, int(val)
            if typ is float:
                return key, float(val)
            if typ is str:
                return key, json.loads(val) if val.startswith('"') else val
            return key, json.loads(val)
        except ValueError:
            name = getattr(typ, "__name__", str(typ))
            raise ValueError(f"--model-opt {key}: expected {name}, got {val!r}") from None

    @classmethod
    def checkpoint_options(cls, recorded: Mapping[str, Any]) -> dict[str, Any]:
        """The options that rebuild a checkpoint whose sidecar recorded ``recorded``: those, plus
        :attr:`ABSENT_IN_OLD_CHECKPOINTS` for the ones it predates."""
        return {**{k: v for k, v in cls.ABSENT_IN_OLD_CHECKPOINTS.items() if k not in recorded}, **recorded}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CropView:
    """The whole stacks a batch of training crops was cut from, one per crop (lists of B):
    ``frames`` [F_i,3,H_i,W_i] (the frames the crop uses, in the sample's own order, unflipped),
    ``cameras`` their CameraBatch (batch of 1), ``yx`` (y, x) the crop's top-left pixel in it,
    ``flips`` (vertical, horizontal) the flips the crop then had; ``keys`` name each whole stack
    and ``cache`` (a :class:`PriorCache`) keeps what a model computes over it, so it is computed
    once per stack, not once per step (None: computed every time)."""

    frames: list[torch.Tensor]
    cameras: list[CameraBatch]
    yx: list[tuple[int, int]]
    flips: list[tuple[bool, bool]]
    keys: list[str] | None = None
    cache: "PriorCache | None" = None

    @classmethod
    def from_batch(cls, views: list[dict], device=None, cache: "PriorCache | None" = None) -> "CropView":
        """From the ``crop_view`` list of a collated batch (:class:`focalstack.data.StackAugment`)."""
        return cls([v["frames"].to(device) for v in views],
                   [CameraBatch.from_dict({k: x[None] for k, x in v["camera"].items()}, device) for v in views],
                   [tuple(int(c) for c in v["yx"]) for v in views], [tuple(bool(c) for c in v["flips"]) for v in views],
                   [v["key"] for v in views], cache)

    def cut(self, i: int, maps: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """Crop i of ``maps`` [1,...,H_i,W_i] computed over whole stack i: [1,...,h,w], flipped as the crop was."""
        y, x = self.yx[i]
        out = maps[..., y:y + h, x:x + w]
        dims = [d for d, on in zip((-2, -1), self.flips[i]) if on]
        return out.flip(dims) if dims else out


class PriorCache:
    """What a model computes over a whole training stack (a tuple of tensors), by the stack's key, up to
    ``budget_bytes`` in all (stacks past it are recomputed when met). The computation must not depend on
    the model's weights (DAIF-Net's cost maps do not): a cached value is reused for the whole run."""

    def __init__(self, budget_bytes: int):
        self.budget_bytes = int(budget_bytes)
        self.nbytes = 0
        self._store: dict[str, tuple] = {}

    def get(self, key: str):
        return self._store.get(key)

    def put(self, key: str, value: tuple) -> None:
        n = sum(t.numel() * t.element_size() for t in value)
        if key not in self._store and self.nbytes + n <= self.budget_bytes:
            self._store[key] = value
            self.nbytes += n

    def __len__(self) -> int:
        return len(self._store)


@dataclass
class StackInputs:
    """A model's checked inputs: ``frames`` [B,F,3,H,W]; ``focus_distances_m`` [B,F] float32;
    ``depth_range_m`` [B,2] float32; ``camera`` the CameraBatch on the frames' device in float32
    (None when only focus distances were given); ``image`` [B,3,H,W] or None; ``view`` the
    :class:`CropView` the frames were cut from, or None (the frames are the whole stacks)."""

    model: str
    frames: torch.Tensor
    focus_distances_m: torch.Tensor
    depth_range_m: torch.Tensor
    camera: CameraBatch | None = None
    image: torch.Tensor | None = None
    view: CropView | None = None

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """(B, F, H, W)."""
        b, f, _, h, w = self.frames.shape
        return b, f, h, w

    def lens(self, who: str | None = None) -> CameraBatch:
        """The camera, for models whose input needs the lens (one line naming ``who`` — default the
        model — if only focus distances came)."""
        if self.camera is None:
            raise ValueError(f"{who or self.model} needs the camera (the full camera: focal length, f-numbers, pixel "
                             "size), not only focus distances")
        return self.camera


def stack_inputs(model: str, frames: torch.Tensor, camera, depth_range_m,
                 image: torch.Tensor | None = None, view: CropView | None = None) -> StackInputs:
    """Check a model's inputs (shapes named in one line) and normalise them (:class:`StackInputs`)."""
    if frames.dim() != 5 or frames.shape[2] != 3:
        raise ValueError(f"{model}: frames must be [B,F,3,H,W], got {tuple(frames.shape)}")
    b, f, _, h, w = frames.shape
    cam = None
    if isinstance(camera, CameraBatch):
        cam = camera.to(frames.device, torch.float32)
        for k in ("focus_distances_m", "f_numbers"):
            got = getattr(cam, k).shape
            if got != (b, f):
                raise ValueError(f"{model}: the camera has {k} {tuple(got)} for {b} stacks of {f} frames")
        fd = cam.focus_distances_m
    else:
        fd = torch.as_tensor(camera, dtype=torch.float32, device=frames.device)
        if fd.dim() == 1 and fd.shape[0] == f:
            fd = fd.view(1, f).expand(b, f)
        if fd.shape != (b, f):
            raise ValueError(f"{model}: focus_distances_m must be [B,F] = [{b},{f}], got {tuple(fd.shape)}")
    rng = depth_range_tensor(depth_range_m, b, frames.device, torch.float32)
    if image is not None and image.shape != (b, 3, h, w):
        raise ValueError(f"{model}: image must be [B,3,H,W] = [{b},3,{h},{w}], got {tuple(image.shape)}")
    if view is not None:
        _check_view(model, view, b, f, h, w)
    return StackInputs(model, frames, fd, rng, cam, image, view)


def _check_view(model: str, view: CropView, b: int, f: int, h: int, w: int) -> None:
    n = {len(view.frames), len(view.cameras), len(view.yx), len(view.flips)}
    if n != {b}:
        raise ValueError(f"{model}: the crop view holds {sorted(n)} stacks for {b} crops")
    for i, s in enumerate(view.frames):
        y, x = view.yx[i]
        if s.dim() != 4 or s.shape[1] != 3 or not 1 <= s.shape[0] <= f or view.cameras[i].num_frames != s.shape[0] \
                or not (0 <= y <= s.shape[-2] - h and 0 <= x <= s.shape[-1] - w):
            raise ValueError(f"{model}: crop {i} ({h}×{w} at y={y}, x={x}, {f} frames) is not inside its whole stack "
                             f"{tuple(s.shape)} ({view.cameras[i].num_frames} focus distances)")


class FocalStackModel(nn.Module, ABC):
    """Base of every learned model (module doc). A subclass sets ``Config`` (its
    :class:`ModelConfig`), builds its layers in ``__init__`` after ``super().__init__(config,
    **options)`` (``self.config`` then holds the checked options) and implements :meth:`run`.

    Class attributes of the contract:

    * ``image_input`` — True for a model whose depth comes from a single image: its forward reads
      ``image=`` (training: the sample's aif.png, which every training sample then needs for
      ``--supervision self``) and makes one from the stack when none is given.
    * ``LOSS_DEFAULTS`` — loss weights (``LossConfig`` field → value) that ``focalstack train``
      applies to a fresh run of this model (``--w-*`` override them).
    """

    Config: ClassVar[type[ModelConfig]] = ModelConfig
    image_input: ClassVar[bool] = False
    LOSS_DEFAULTS: ClassVar[dict[str, float]] = {}

    def __init__(self, config: ModelConfig | None = None, **options):
        super().__init__()
        if config is None:
            config = self.Config.from_options(options, type(self).__name__)
        elif options:
            config = self.Config.from_options({**config.to_dict(), **options}, type(self).__name__)
        if not isinstance(config, self.Config):
            raise TypeError(f"{type(self).__name__} takes a {self.Config.__name__}, got {type(config).__name__}")
        self.config = config

    def forward(self, frames: torch.Tensor, camera: CameraBatch | torch.Tensor, depth_range_m,
                image: torch.Tensor | None = None, view: CropView | None = None) -> dict:
        """frames [B,F,3,H,W]; camera: CameraBatch (or focus distances [B,F] / [F] for models that
        need no lens); depth_range_m (near, far) or [B,2]; image [B,3,H,W] for ``image_input``
        models; view: the :class:`CropView` the frames were cut from (training crops) →
        {"depth_m": [B,1,H,W], "aif": [B,3,H,W], model-specific extras}."""
        return self.run(stack_inputs(type(self).__name__, frames, camera, depth_range_m, image, view))

    @property
    def reads_crop_view(self) -> bool:
        """Whether :meth:`run` reads ``view`` (a prior computed over the whole image): the trainer hands
        its crops their whole stacks only then."""
        return False

    @abstractmethod
    def run(self, x: StackInputs) -> dict:
        """The model on checked inputs (see :class:`StackInputs`)."""
