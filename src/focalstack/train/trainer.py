"""The training loop: self-supervised (or supervised comparison) DAIF-Net training with exact
resume, DDP, AMP, TensorBoard and atomic checkpoints (layout: see ``focalstack.checkpoint``).

Exact resume: ``state.pt`` holds the model, optimiser, scheduler, grad-scaler, the python / numpy /
torch (/CUDA) RNG streams, the step, the epoch and how many batches of that epoch were consumed.
The data order is a pure function of (seed, epoch) (a ``DistributedSampler``, also for a single
process) and the augmentation a pure function of (seed, epoch, index) (``FocalStackDataset``), so a
resumed run skips the consumed batches of the current epoch and continues bit-for-bit (CPU,
same thread count). ``state.pt`` is written every ``ckpt_interval`` steps, at the end, on
``--max-minutes``, and on Ctrl-C / SIGTERM.

Every model (``focalstack.models.MODELS``, the contract of ``focalstack.models.base``) gets
``model(frames, camera, depth_range)`` with the batch's whole CameraBatch, plus ``image=`` (the
batch's AIF, when every sample has one) for ``image_input`` models (Gur & Wolf, which then also
needs aif.png for ``--supervision self``). ``TrainConfig.scale_aug`` applies
DDFS's scale augmentation per training batch (:func:`scale_batch`).

The run (:meth:`Trainer.fit`): open the run folder (resume or start, config.json, teacher labels),
then the loop of optimiser steps with the periodic validation / checkpoint, until one of the
:class:`StopRules` fires, then the final validation and checkpoint. Around the loop, one small hook
per concern, each called after every step and closed at the end: SIGTERM as Ctrl-C, the progress
bar, TensorBoard, the caller's callbacks and the test hooks.

Test hooks (environment): ``FOCALSTACK_KILL_AT_STEP=k`` exits the process at once after step k
without saving (like SIGKILL); ``FOCALSTACK_DUMP_WEIGHTS=DIR`` makes every rank write
``DIR/rank{r}.sha256`` with the SHA-256 of its weights at the end.
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import sys
import time
import warnings
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset
from torch.utils.data.distributed import DistributedSampler

from ..data import FocalStackDataset, StackAugment, collate_stacks, load_camera, read_depth
from ..data.io import claim_output_dir
from ..render import light
from ..render.psf import window_size_px
from ..losses import LossConfig, compute_losses
from ..models import CropView, PriorCache, build_model, count_parameters, full_options, model_class, recorded_options
from ..optics.camera import CameraBatch, FocalStackCamera
from . import distributed as D
from ..checkpoint import (atomic_write_json, load_model, load_state, resolve_init, save_state, save_weights,
                          weights_digest)
from .config import TrainConfig

Callback = Callable[["Trainer", int, dict], None]


# ---- helpers ------------------------------------------------------------------------------
def choose_kernel_size(cameras: Sequence[FocalStackCamera], ranges: Sequence[tuple[float, float]],
                       cap: int = 21) -> int:
    """Smallest odd window holding ±3σ of the largest Gaussian σ (pixels) the cameras produce over
    their depth ranges (σ of a frame is largest at ``near`` or ``far``), capped at ``cap``."""
    smax = 0.0
    for cam, (near, far) in zip(cameras, ranges):
        d = torch.tensor([near, far], dtype=torch.float64).view(2, 1, 1, 1)
        smax = max(smax, float(cam.sigma_px(d).max()))
    return window_size_px(smax, "gaussian", cap)


class CosineSchedule:
    """LR factor per step: linear warm-up over ``warmup`` steps, then cosine decay to ``min_ratio``
    at step ``total``. A callable object (not a closure) so that ``LambdaLR.state_dict`` saves its
    fields — a ``total`` re-planned for ``--max-minutes`` resumes exactly."""

    def __init__(self, warmup: int, total: int, min_ratio: float):
        self.warmup, self.total, self.min_ratio = int(warmup), int(total), float(min_ratio)

    def __call__(self, step: int) -> float:
        if self.warmup > 0 and step < self.warmup:
            return (step + 1) / self.warmup
        t = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        return self.min_ratio + (1.0 - self.min_ratio) * 0.5 * (1.0 + math.cos(math.pi * t))


# --max-minutes: steps timed (after the first, which compiles kernels and fills caches) before
# the schedule is planned, and the share of the remaining time planned for steps (the rest is
# left to validation, checkpoints and speed changes; the time limit still stops the run).
PLAN_AFTER_STEPS = 10
PLAN_HEADROOM = 0.85
# The first steps run slower than the rest (caches warm up: a 12-minute fine-tune measured 0.78
# steps/s there and averaged 0.97), so the plan is made once more when this share of the budget is
# spent, from the speed since the plan (validation and checkpoints included, hence the higher
# headroom). Early in the cosine the LR moves by a few percent at most. The re-plan comes sooner
# when REPLAN_AT_PLAN of the planned steps are done first: a plan made from slow first steps (a
# fresh install compiles a renderer kernel for every new window size, and a batch of mixed cameras
# meets a new size for many steps: 0.18 steps/s over steps 2–11 of a 55-minute pretraining, ~1
# steps/s after) would otherwise end the run at a fifth of its budget, before the budget's re-plan.
REPLAN_AT_BUDGET = 0.25
REPLAN_AT_PLAN = 0.25
REPLAN_HEADROOM = 0.95


def plan_total_steps(step: int, seconds_per_step: float, remaining_s: float, max_steps: int,
                     headroom: float = PLAN_HEADROOM) -> int:
    """The step at which a cosine schedule should end so that it finishes inside a time budget:
    ``step`` + the steps that ``headroom`` × ``remaining_s`` allow at ``seconds_per_step``, at
    most ``max_steps`` and at least ``step`` + 1."""
    more = int(headroom * max(0.0, remaining_s) / max(seconds_per_step, 1e-9))
    return max(step + 1, min(int(max_steps), step + more))


def _rng_state() -> dict:
    st = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def _set_rng_state(st: dict) -> None:
    random.setstate(st["python"])
    np.random.set_state(st["numpy"])
    torch.set_rng_state(st["torch"])
    if "cuda" in st and torch.cuda.is_available():
        try:
            torch.cuda.set_rng_state_all(st["cuda"])
        except (RuntimeError, IndexError):
            pass


def _env_int(name: str) -> int | None:
    v = os.environ.get(name)
    return int(v) if v not in (None, "") else None


def _check_required_files(paths: Sequence[Path], supervision: str) -> None:
    need = {"depth": ("depth.npy", "depth"), "aif": ("aif.png", "AIF")}.get(supervision)
    if need is None:
        return
    missing = [p for p in paths if not (p / need[0]).is_file()]
    if missing:
        raise ValueError(f"--supervision {supervision} needs {need[0]} in every training sample, but "
                         f"{len(missing)} of {len(paths)} lack it (first: {missing[0]})")
    if supervision == "depth":  # depth with no valid pixel would train on nothing, silently
        empty = [p / "depth.npy" for p in paths if not _has_valid_depth(p / "depth.npy")]
        if len(empty) == len(paths):
            raise ValueError(f"--supervision depth: no valid depth (finite, > 0) in any training sample's depth.npy "
                             f"({empty[0]}{f' and {len(empty) - 1} more' if len(empty) > 1 else ''})")
        if empty:
            warnings.warn(f"--supervision depth: {len(empty)} of {len(paths)} depth.npy files have no valid depth "
                          f"and supervise nothing (first: {empty[0]})", stacklevel=2)


def _sample_key(root: Path, path: Path) -> str:
    """A sample folder's name in a run's records: its path under the data folder (names may repeat in
    sub-folders)."""
    try:
        return Path(path).resolve().relative_to(Path(root).resolve()).as_posix()
    except ValueError:
        return Path(path).name


def _has_valid_depth(path: Path) -> bool:
    d = read_depth(path).numpy()
    return bool(((d > 0) & np.isfinite(d)).any())


def scale_factors(lo: float, hi: float, step: float, n: int, seed: int, step_index: int) -> torch.Tensor:
    """DDFS scale augmentation: n factors drawn uniformly from {lo, lo + step, …, ≤ hi}, a pure
    function of (seed, step_index) so a resumed run draws the same ones."""
    k = int(math.floor((hi - lo) / step + 1e-9)) + 1
    grid = lo + step * torch.arange(k, dtype=torch.float64)
    g = torch.Generator().manual_seed(seed * 1_000_003 + 7919 * step_index + 17)
    return grid[torch.randint(0, k, (n,), generator=g)]


def scale_batch(batch: dict, s: torch.Tensor) -> dict:
    """Scale a device batch per sample by s [B] (``FocalStackCamera.scaled`` on the CameraBatch + GT depth):
    focal length, focus distances, pixel size and depth × s; frames, AIF and f-numbers unchanged."""
    cam = batch["camera"]
    s = s.to(device=cam.focal_length_m.device, dtype=cam.focal_length_m.dtype)
    out = dict(batch)
    out["camera"] = CameraBatch(focal_length_m=cam.focal_length_m * s, pixel_size_m=cam.pixel_size_m * s,
                                psf_scale=cam.psf_scale, focus_distances_m=cam.focus_distances_m * s.view(-1, 1),
                                f_numbers=cam.f_numbers)
    if "depth" in batch:
        out["depth"] = batch["depth"] * s.to(batch["depth"].dtype).view(-1, 1, 1, 1)
    return out


def _vis_depth(depth: torch.Tensor, rng: torch.Tensor) -> torch.Tensor:
    """[B,1,H,W] metres → [B,3,H,W] in [0,1]: inverse-depth position in the range (bright = near)."""
    inv_n, inv_f = 1.0 / rng[:, 0].view(-1, 1, 1, 1), 1.0 / rng[:, 1].view(-1, 1, 1, 1)
    u = ((1.0 / depth - inv_f) / (inv_n - inv_f)).clamp(0, 1)
    return u.expand(-1, 3, -1, -1)


# ---- trainer ------------------------------------------------------------------------------
class Trainer:
    """Build with a :class:`TrainConfig`; :meth:`fit` trains and returns a summary dict.

    ``resume``: None = resume if ``out_dir/state.pt`` exists, True = require it, False = start over
    (existing checkpoints are overwritten). ``callbacks`` are called as ``cb(trainer, step, terms)``
    after every optimiser step (raising KeyboardInterrupt from one stops the run with a checkpoint).
    """

    def __init__(self, cfg: TrainConfig, callbacks: Sequence[Callback] = (), resume: bool | None = None):
        # every model option recorded (config.json, state.pt, sidecars), not only those given: a default
        # that changes later cannot then change what a saved run or checkpoint is
        cfg = replace(cfg, model_cfg=full_options(cfg.model, cfg.model_cfg))
        self.cfg = cfg
        self.callbacks = list(callbacks)
        self.resume = resume
        if not cfg.data_dir:
            raise ValueError("TrainConfig.data_dir is empty")
        dev = cfg.device
        if dev == "auto":
            dev = "cuda" if torch.cuda.is_available() else "cpu"
        self.dist = D.setup(torch.device(dev).type)
        if torch.device(dev).type == "cuda" and self.dist.enabled:
            dev = f"cuda:{self.dist.local_rank}"
        self.device = torch.device(dev)
        self.out_dir = Path(cfg.out_dir)
        self.run_inputs = [cfg.data_dir, cfg.val_dir]
        self.is_main = self.dist.is_main
        self.loss_cfg = replace(cfg.loss, supervision=cfg.supervision)
        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.best_val = math.inf
        self.train_seconds = 0.0          # wall time spent training in this run, over all resumes
        self.last_metrics: dict = {}
        self._writer = None
        try:
            # refuse a run folder that is a file, overlaps the data or is a folder focalstack did not write
            claim_output_dir(self.out_dir, "run", self.run_inputs, create=False)
            self._setup_data()
            self._setup_model()
        except BaseException:
            D.teardown(self.dist)
            raise

    # -- data --
    def _ranges_for(self, paths: Sequence[Path]) -> tuple[list[FocalStackCamera], torch.Tensor]:
        cams = [load_camera(p) for p in paths]
        if self.cfg.depth_range is not None:
            rng = [tuple(self.cfg.depth_range)] * len(cams)
        else:
            rng = [c.effective_depth_range_m() for c in cams]
        return cams, torch.tensor(rng, dtype=torch.float32)

    def _setup_data(self) -> None:
        cfg = self.cfg
        aug = StackAugment(crop_size=cfg.crop_size, hflip=cfg.hflip, vflip=cfg.vflip,
                           num_frames=cfg.num_frames, permute=cfg.permute)
        # single-image models trained through the renderer (Gur & Wolf) take the sample's AIF as input
        # and render from it: self/aif supervision needs aif.png in every training sample
        self.aif_input = model_class(cfg.model).image_input
        need_aif = cfg.supervision == "aif" or (self.aif_input and cfg.supervision == "self")
        # self-supervision compares re-rendered frames with the frames: one frame has nothing to compare,
        # unless the model renders from the given AIF (Gur & Wolf's F1 setup: one frame is its signal)
        min_frames = 2 if cfg.supervision == "self" and not self.aif_input else 1
        self.labels_dir = self.out_dir / "teacher" if cfg.teacher else None
        self.train_ds = FocalStackDataset(cfg.data_dir, aug, seed=cfg.seed, min_frames=min_frames,
                                          require_depth=cfg.supervision == "depth",
                                          require_aif=need_aif, strict=cfg.strict, labels_dir=self.labels_dir)
        _check_required_files(self.train_ds.paths, cfg.supervision)
        # a malformed sample stops here with one line, not in a loader worker, before the run folder exists
        shapes = self.train_ds.check()
        if need_aif and cfg.supervision == "self":
            missing = [p for p in self.train_ds.paths if not (p / "aif.png").is_file()]
            if missing:
                raise ValueError(f"--model {cfg.model} takes the AIF image as input and renders the stack from it: "
                                 f"it needs aif.png in every training sample, but {len(missing)} of "
                                 f"{len(self.train_ds.paths)} lack it (first: {missing[0]})")
        self.train_cams, self.train_ranges = self._ranges_for(self.train_ds.paths)
        val_root = cfg.val_dir or cfg.data_dir
        self.val_ds_full = FocalStackDataset(val_root, StackAugment(), seed=cfg.seed, strict=cfg.strict)
        n_val = min(len(self.val_ds_full), cfg.val_max_samples)
        self.val_ds = Subset(self.val_ds_full, list(range(n_val)))
        if cfg.val_dir:
            self.val_ds_full.check()
        _, self.val_ranges = self._ranges_for(self.val_ds_full.paths[:n_val])
        # each stack read as predict will read it (range from its evidence, working scale): train/views.py
        self.views_on = cfg.evidence_view and cfg.depth_range is None
        self.train_views = self.val_views = None
        if self.views_on:
            self._read_stack_views(n_val)
        # stacks of different sizes share a batch: collate_stacks pads each by repeating its own frames
        cams = self.train_cams if self.train_views is None else \
            [c.resized(v.scale) for c, v in zip(self.train_cams, self.train_views)]
        self.kernel_size = cfg.kernel_size or choose_kernel_size(cams, self.train_ranges.tolist(), cfg.max_kernel_size)
        self.loss_cfg = replace(self.loss_cfg, kernel_size=self.kernel_size)
        self.sampler = DistributedSampler(self.train_ds, num_replicas=self.dist.world_size, rank=self.dist.rank,
                                          shuffle=True, seed=cfg.seed, drop_last=False)
        per_rank = len(self.sampler)
        self.batch_size = min(cfg.batch_size, per_rank)
        self.steps_per_epoch = per_rank // self.batch_size

    def _read_stack_views(self, n_val: int) -> None:
        """Every training stack's and the first ``n_val`` validation stacks' :class:`StackView`: from
        ``RUN/views.json`` when the run resumes (made with other settings: an error naming it), else
        computed (:func:`focalstack.train.views.dataset_views`); the ranges and the datasets' scales follow."""
        from .views import VIEWS_FILE, dataset_views, read_views, view_settings
        cfg = self.cfg
        settings = view_settings(cfg.crop_size)
        resuming = self.resume is not False and (self.out_dir / "state.pt").is_file()
        cached = read_views(self.out_dir / VIEWS_FILE, settings) if resuming else None

        def keys(ds, root):
            return [_sample_key(Path(root), p) for p in ds.paths]

        tk = keys(self.train_ds, cfg.data_dir)
        vk = keys(self.val_ds_full, cfg.val_dir or cfg.data_dir)[:n_val]
        progress = cfg.progress and self.is_main
        # whole-frame batches need equal sizes: then the range alone, every stack at its own size
        tv = dataset_views(self.train_ds.paths, tk, [tuple(r) for r in self.train_ranges.tolist()], cfg.crop_size,
                           (cached or {}).get("train"), progress, "views (train)", keep_size=cfg.crop_size is None)
        # validation crops nothing: its stacks are read exactly as predict reads them
        vv = dataset_views(self.val_ds_full.paths[:n_val], vk, [tuple(r) for r in self.val_ranges.tolist()], None,
                           (cached or {}).get("val"), progress, "views (val)")
        self.train_views, self.val_views = tv, vv
        self.views_record = {"settings": settings, "train": {k: v.to_dict() for k, v in zip(tk, tv)},
                             "val": {k: v.to_dict() for k, v in zip(vk, vv)}}
        self.train_ranges = torch.tensor([v.depth_range_m for v in tv], dtype=torch.float32)
        self.val_ranges = torch.tensor([v.depth_range_m for v in vv], dtype=torch.float32).view(-1, 2)
        self.train_ds.set_scales([v.scale for v in tv])
        self.val_ds_full.set_scales([v.scale for v in vv] + [1.0] * (len(self.val_ds_full) - n_val))

    def _loader(self, epoch: int, skip_batches: int) -> DataLoader:
        self.sampler.set_epoch(epoch)
        self.train_ds.set_epoch(epoch)
        idx = list(iter(self.sampler))[skip_batches * self.batch_size: self.steps_per_epoch * self.batch_size]
        return DataLoader(self.train_ds, batch_size=self.batch_size, sampler=idx, drop_last=False,
                          collate_fn=collate_stacks,
                          num_workers=self.cfg.num_workers, pin_memory=self.device.type == "cuda",
                          generator=torch.Generator().manual_seed(self.cfg.seed + epoch),
                          persistent_workers=False)

    # -- model --
    def _setup_model(self) -> None:
        cfg = self.cfg
        random.seed(cfg.seed)
        np.random.seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        self.model = build_model(cfg.model, **cfg.model_cfg).to(self.device)
        # crops carry their whole stacks for a model that reads a whole-image prior (--crop-context view);
        # that prior depends on no weight, so it is computed once per stack and kept (--crop-cache-gb).
        # Not under --scale-aug: it rescales each step's camera, which the whole stack's prior would not follow
        self.train_ds.augment.crop_view = (cfg.crop_context == "view" and self.model.reads_crop_view
                                           and cfg.scale_aug is None)
        self.prior_cache = PriorCache(int(cfg.crop_cache_gb * 2 ** 30))
        self._load_init()   # a resumed run's state.pt overrides these weights in fit()
        self.n_params = count_parameters(self.model)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.schedule = CosineSchedule(cfg.warmup_steps, cfg.max_steps, cfg.min_lr_ratio)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self.schedule)
        self.schedule_planned = cfg.max_minutes is None   # --max-minutes: planned after timing a few steps
        self.schedule_replanned = cfg.max_minutes is None  # ... and once more (REPLAN_AT_BUDGET / _AT_PLAN)
        self.schedule_planned_at = 0                        # the step of the first plan
        amp = cfg.amp
        if self.device.type != "cuda":
            amp = "off" if amp == "auto" else amp
        elif amp == "auto":
            amp = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        self.amp = amp
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=(amp == "fp16"))
        self.ddp = self.model
        if self.dist.enabled:
            self.ddp = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)

    def _load_init(self) -> None:
        """``TrainConfig.init``: start from a trained checkpoint of the same model and settings."""
        path = resolve_init(self.cfg.init, self.cfg.model, self.cfg.model_cfg)
        if path is None:
            return
        init, meta = load_model(path)
        spec = meta.get("model", {})
        if spec.get("name") != self.cfg.model or spec.get("cfg") != self.cfg.model_cfg:
            raise ValueError(f"--init {self.cfg.init}: that checkpoint is {spec.get('name')} {spec.get('cfg')}, "
                             f"this run trains {self.cfg.model} {dict(self.cfg.model_cfg)}; leave out the model "
                             "options to adopt the checkpoint's")
        self.model.load_state_dict(init.state_dict())

    def _autocast(self):
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    # -- state --
    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
                "rng": _rng_state(), "step": self.step, "epoch": self.epoch,
                "batch_in_epoch": self.batch_in_epoch, "best_val": self.best_val,
                "schedule_planned": self.schedule_planned, "schedule_replanned": self.schedule_replanned,
                "schedule_planned_at": self.schedule_planned_at,
                "train_seconds": self._elapsed_s(),
                "last_metrics": self.last_metrics, "config": self.cfg.to_dict(),
                "physics_light": light.PHYSICS_LIGHT}

    def _elapsed_s(self) -> float:
        """Training wall time of this run so far, summed over resumed sessions (seconds)."""
        t = getattr(self, "_session_start", None)
        return self.train_seconds + (time.monotonic() - t if t is not None else 0.0)

    def _plan_schedule(self, steps: int, t_ref: float, again: bool = False) -> None:
        """--max-minutes: end the cosine schedule where the time budget runs out, at the speed of the
        last ``steps`` − 1 steps (timed from ``t_ref``); ``again``: the re-plan (REPLAN_AT_BUDGET)."""
        cfg = self.cfg
        sps = (time.monotonic() - t_ref) / max(1, steps - 1)
        total = plan_total_steps(self.step, sps, cfg.max_minutes * 60.0 - self._elapsed_s(), cfg.max_steps,
                                 REPLAN_HEADROOM if again else PLAN_HEADROOM)
        if self.dist.enabled:  # every rank must stop at the same step
            sps = float(D.mean_scalar(self.dist, sps, self.device))
            total = int(round(D.mean_scalar(self.dist, float(total), self.device)))
        self.schedule.total = total
        if not again:   # the warm-up is over by the re-plan: changing it then would move the LR
            self.schedule.warmup = min(self.schedule.warmup, max(1, total // 10))
            self.schedule_planned_at = self.step
        self.schedule_planned = True
        self.schedule_replanned = again
        if self.is_main:
            print(f"focalstack train: --max-minutes {cfg.max_minutes:g}: {1 / sps:.2f} steps/s over steps "
                  f"{self.step - steps + 2}–{self.step}; cosine schedule {'re-planned' if again else 'planned'} "
                  f"to end at step {total}{' (= --max-steps)' if total == cfg.max_steps else ''}", file=sys.stderr)

    def load_state_dict(self, st: dict) -> None:
        self.model.load_state_dict(st["model"])
        self.optimizer.load_state_dict(st["optimizer"])
        self.scheduler.load_state_dict(st["scheduler"])   # restores the schedule object's total too
        self.schedule_planned = st.get("schedule_planned", True)
        self.schedule_replanned = st.get("schedule_replanned", True)   # runs from before the re-plan: none
        self.schedule_planned_at = st.get("schedule_planned_at", 0)
        self.train_seconds = st.get("train_seconds", 0.0)
        self.scaler.load_state_dict(st["scaler"])
        _set_rng_state(st["rng"])
        self.step, self.epoch, self.batch_in_epoch = st["step"], st["epoch"], st["batch_in_epoch"]
        self.best_val = st.get("best_val", math.inf)
        self.last_metrics = st.get("last_metrics", {})

    def meta(self) -> dict:
        cams = []
        for c in self.train_cams:
            d = c.to_dict()
            if d not in cams:
                cams.append(d)
            if len(cams) >= 8:
                break
        ranges = {tuple(r) for r in self.train_ranges.tolist()}
        # a run that read its stacks' evidence has no fixed range: predict reads each stack's evidence as it did
        return {"model": {"name": self.cfg.model, "cfg": dict(self.cfg.model_cfg)},
                "depth_range_m": list(self.cfg.depth_range) if self.cfg.depth_range else
                (list(next(iter(ranges))) if len(ranges) == 1 and not self.views_on else None),
                "depth_range_source": "config" if self.cfg.depth_range else ("evidence" if self.views_on else "camera"),
                "cameras": cams, "kernel_size": self.kernel_size, "supervision": self.cfg.supervision,
                "step": self.step, "epoch": self.epoch, "n_params": self.n_params,
                "train_seconds": round(self._elapsed_s(), 1),   # summed over resumes: runs may be interrupted
                "metrics": self.last_metrics, "best_val_loss": self.best_val if math.isfinite(self.best_val) else None,
                "config": self.cfg.to_dict()}

    def save(self, best: bool = False) -> None:
        """Rank 0 writes last.{safetensors,json} + state.pt (and best.* when ``best``)."""
        if not self.is_main:
            return
        save_weights(self.out_dir, "last", self.model, self.meta())
        save_state(self.out_dir, self.state_dict())
        if best:
            save_weights(self.out_dir, "best", self.model, self.meta())

    # -- logging --
    @property
    def writer(self):
        return self._writer

    def _log_scalars(self, prefix: str, d: dict) -> None:
        w = self.writer
        if w is None:
            return
        for k, v in d.items():
            if isinstance(v, (int, float)) and math.isfinite(float(v)):
                w.add_scalar(f"{prefix}/{k}", float(v), self.step)

    # -- one step --
    def _to_device(self, batch: dict) -> dict:
        nb = self.device.type == "cuda"
        out = {k: (v.to(self.device, non_blocking=nb) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}
        out["camera"] = CameraBatch.from_dict(batch["camera"], device=self.device)
        if "crop_view" in batch:
            out["crop_view"] = CropView.from_batch(batch["crop_view"], self.device, self.prior_cache)
        return out

    def _forward(self, model, batch: dict, ranges: torch.Tensor, loss_cfg: LossConfig, extras=None):
        rng = ranges[batch["index"].cpu()].to(self.device)
        image = batch["aif"] if self.aif_input and bool(batch["has_aif"].all()) else None
        with self._autocast():
            out = model(batch["frames"], batch["camera"], rng, image=image, view=batch.get("crop_view"))
        out = {k: v.float() for k, v in out.items()}
        total, terms = compute_losses(out, batch, loss_cfg, extras)
        return out, total, terms, rng

    def train_step(self, batch: dict) -> dict:
        batch = self._to_device(batch)
        if self.cfg.scale_aug is not None:
            lo, hi = self.cfg.scale_aug
            batch = scale_batch(batch, scale_factors(lo, hi, self.cfg.scale_aug_step, len(batch["index"]),
                                                     self.cfg.seed + 7 * self.dist.rank, self.step))
        self.ddp.train()
        out, total, terms, _ = self._forward(self.ddp, batch, self.train_ranges, self.loss_cfg)
        if self.dist.enabled:  # every parameter gets a (possibly zero) gradient: DDP-safe ablations
            total = total + 0.0 * sum(v.sum() for v in out.values())
        bad = D.any_flag(self.dist, not bool(torch.isfinite(total)), self.device)
        self.optimizer.zero_grad(set_to_none=True)
        if bad:
            self._bad_steps += 1
            if self._bad_steps > 20:
                raise FloatingPointError(f"non-finite loss for {self._bad_steps} consecutive steps (terms: "
                                         f"{ {k: float(v) for k, v in terms.items()} })")
        else:
            self._bad_steps = 0
            self.scaler.scale(total).backward()
            if self.cfg.grad_clip:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        self.scheduler.step()
        return {k: float(v) for k, v in terms.items()}

    # -- validation --
    @torch.no_grad()
    def validate(self) -> dict:
        """Rank 0: self-supervised loss (selects the best checkpoint) + GT metrics where available."""
        from .. import metrics as M
        model = self.model
        model.eval()
        self_cfg = replace(self.loss_cfg, supervision="self")
        loader = DataLoader(self.val_ds, batch_size=1, shuffle=False, num_workers=0)
        sums: dict[str, float] = {}
        dm: list[dict] = []
        am: list[dict] = []
        n = 0
        for i, batch in enumerate(loader):
            batch = self._to_device(batch)
            extras = {} if i == 0 else None
            out, _, terms, rng = self._forward(model, batch, self.val_ranges, self_cfg, extras)
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + float(v)
            n += 1
            if bool(batch["has_depth"].all()):
                try:
                    dm.append(M.depth_metrics(out["depth_m"][:, 0], batch["depth"][:, 0]))
                except Exception:  # noqa: BLE001 - metrics must never stop training
                    pass
            if bool(batch["has_aif"].all()):
                try:
                    am.append(M.aif_metrics(out["aif"].clamp(0, 1), batch["aif"]))
                except Exception:  # noqa: BLE001
                    pass
            if i == 0 and self.writer is not None:
                w = self.writer
                w.add_images("val/frames", batch["frames"][0].clamp(0, 1), self.step)
                w.add_images("val/aif", out["aif"].clamp(0, 1), self.step)
                w.add_images("val/depth", _vis_depth(out["depth_m"], rng), self.step)
                if "rendered" in extras:
                    w.add_images("val/rendered", extras["rendered"][0].clamp(0, 1), self.step)
                if "coarse_aif" in extras:
                    w.add_images("val/coarse_aif", extras["coarse_aif"], self.step)
                if bool(batch["has_depth"].all()):
                    w.add_images("val/depth_gt", _vis_depth(batch["depth"].clamp_min(1e-3), rng), self.step)
        model.train()
        res = {f"val_{k}" if k != "total" else "val_loss": v / max(n, 1) for k, v in sums.items()}
        for prefix, lst in (("depth_", dm), ("aif_", am)):
            keys = {k for d in lst for k in d if k != "n_images"}
            for k in sorted(keys):
                vals = [d[k] for d in lst if isinstance(d.get(k), (int, float)) and math.isfinite(d[k])]
                if vals:
                    res[prefix + k] = sum(vals) / len(vals)
        return res

    def _validate_and_maybe_best(self) -> None:
        self._last_val_step = self.step
        if self.is_main:
            res = self.validate()
            res["step"] = self.step
            self.last_metrics = res
            self._log_scalars("val", res)
            with open(self.out_dir / "metrics.jsonl", "a") as f:
                f.write(json.dumps(res) + "\n")
            if res.get("val_loss", math.inf) < self.best_val:
                self.best_val = res["val_loss"]
                save_weights(self.out_dir, "best", self.model, self.meta())
        D.barrier(self.dist)

    # -- the run --
    def fit(self) -> dict:
        """Train (or resume) until a stop rule ends the run (:class:`StopRules`); Ctrl-C / SIGTERM save a
        checkpoint and re-raise. Returns {"step", "reason", "best_val_loss", "metrics", "out_dir"}."""
        self._open_run()
        self._bad_steps = 0
        self._last_val_step = -1
        hooks = _SessionHooks(self)
        self._session_start = time.monotonic()
        self._announce()
        session = _Session(last_saved=self.step)
        reason = "max_steps"
        try:
            reason = self._loop(session, hooks)
            self._finish(session)
        except KeyboardInterrupt:
            reason = "interrupted"
            if self.step > session.last_saved:
                self.save()
            raise
        finally:
            self.train_seconds = self._elapsed_s()
            self._session_start = None
            hooks.close(reason)
        D.barrier(self.dist)
        return {"step": self.step, "reason": reason, "best_val_loss": self.best_val,
                "metrics": self.last_metrics, "out_dir": str(self.out_dir)}

    def _open_run(self) -> None:
        """Claim the run folder, resume its state (same model settings) or start over, record the
        config, and label the training stacks once for ``--teacher`` (rank 0; the others wait)."""
        cfg = self.cfg
        if self.is_main:
            claim_output_dir(self.out_dir, "run", self.run_inputs)
        D.barrier(self.dist)
        st = None if self.resume is False else load_state(self.out_dir)
        if self.resume is True and st is None:
            raise FileNotFoundError(f"{self.out_dir / 'state.pt'}: nothing to resume")
        if st is not None:
            old = st.get("config", {})
            old_cfg = old.get("model_cfg") or {}
            if old.get("model") == cfg.model:   # options the run predates: the values it was made with
                old_cfg = recorded_options(cfg.model, old_cfg)
            if old.get("model") != cfg.model or old_cfg != cfg.model_cfg:
                raise ValueError(f"{self.out_dir}: the run there trains {old.get('model')} {old.get('model_cfg')}; "
                                 f"use another --out or the same model settings to resume")
            made_in = light.made_in(st)
            if made_in != light.PHYSICS_LIGHT:   # half a run in each light would be neither
                raise ValueError(f"{self.out_dir}: the run there renders in {made_in} light, this process in "
                                 f"{light.PHYSICS_LIGHT} light; resume with FOCALSTACK_PHYSICS_LIGHT={made_in} "
                                 "or use another --out")
            self.load_state_dict(st)
        elif self.is_main:
            for name in ("metrics.jsonl",):
                (self.out_dir / name).unlink(missing_ok=True)
        if self.is_main:
            atomic_write_json(self.out_dir / "config.json", cfg.to_dict())
            if self.views_on:
                from .views import VIEWS_FILE, write_views
                write_views(self.out_dir / VIEWS_FILE, **self.views_record)
        if cfg.teacher and self.is_main:   # label once (resumable); the other ranks wait at the barrier
            from .teacher import TeacherConfig, label_dataset
            # the refine teacher refines the network as the run starts (--init; labels are made before step 1)
            model = self.model if cfg.teacher == "refine" else None
            was_training = self.model.training
            self.model.eval()
            label_dataset(self.train_ds.paths, self.labels_dir,
                          TeacherConfig(kind=cfg.teacher, iters_scale=cfg.teacher_iters_scale,
                                        refine_steps=cfg.teacher_refine_steps, trust=cfg.teacher_trust,
                                        psf=cfg.loss.psf),
                          progress=cfg.progress, model=model,
                          depth_range_m=tuple(cfg.depth_range) if cfg.depth_range else None,
                          views=self.train_views)
            self.model.train(was_training)
        D.barrier(self.dist)

    def _announce(self) -> None:
        if self.is_main and self.step == 0:
            print(f"focalstack train: {self.cfg.model} {self.n_params / 1e6:.2f} M params, {len(self.train_ds)} "
                  f"train stacks, {len(self.val_ds)} val, kernel {self.kernel_size}, device {self.device}"
                  f"{f' ×{self.dist.world_size}' if self.dist.enabled else ''}, amp {self.amp}", file=sys.stderr)

    def _loop(self, session: "_Session", hooks: "_SessionHooks") -> str:
        """Epochs of optimiser steps until a stop rule fires; returns its reason."""
        stop = StopRules(self)
        reason = "max_steps"
        while self.step < stop.bound():
            for batch in self._loader(self.epoch, self.batch_in_epoch):
                terms = self.train_step(batch)
                self._count_step(session)
                if self._maybe_plan_schedule(session):
                    hooks.planned(self.schedule.total)
                hooks.after_step(self, terms)
                why = stop.check()
                if why is None:
                    self._periodic(session)
                    continue
                if why == "max_minutes":
                    reason = why
                break
            if reason == "max_minutes":
                break
        return reason

    def _count_step(self, session: "_Session") -> None:
        """One optimiser step done: the step, this session's steps and the position in the epoch."""
        self.step += 1
        session.steps += 1
        if session.steps == 1:
            session.t_first_step = time.monotonic()
        self.batch_in_epoch += 1
        if self.batch_in_epoch >= self.steps_per_epoch:
            self.epoch += 1
            self.batch_in_epoch = 0

    def _maybe_plan_schedule(self, session: "_Session") -> bool:
        """--max-minutes: plan the schedule once the first steps of this session are timed, and once
        more when REPLAN_AT_BUDGET of the budget is spent or REPLAN_AT_PLAN of the planned steps are
        done, whichever comes first (timed from the plan, or from this session's first step after a
        resume)."""
        if not self.schedule_planned:
            if session.steps <= PLAN_AFTER_STEPS:
                return False
            self._plan_schedule(session.steps, session.t_first_step)
            session.t_plan, session.steps_at_plan = time.monotonic(), session.steps
            return True
        if self.schedule_replanned:
            return False
        budget_due = self._elapsed_s() >= REPLAN_AT_BUDGET * self.cfg.max_minutes * 60.0
        plan_due = self.step - self.schedule_planned_at >= REPLAN_AT_PLAN * (self.schedule.total - self.schedule_planned_at)
        if not (budget_due or plan_due):
            return False
        t_ref, n = ((session.t_plan, session.steps - session.steps_at_plan + 1) if session.t_plan is not None
                    else (session.t_first_step, session.steps))
        if n <= PLAN_AFTER_STEPS:
            return False
        self._plan_schedule(n, t_ref, again=True)
        return True

    def _periodic(self, session: "_Session") -> None:
        """Validation (and the best checkpoint) and the last checkpoint at their intervals."""
        cfg = self.cfg
        if cfg.val_interval and self.step % cfg.val_interval == 0:
            self._validate_and_maybe_best()
        if cfg.ckpt_interval and self.step % cfg.ckpt_interval == 0:
            self.save()
            session.last_saved = self.step

    def _finish(self, session: "_Session") -> None:
        """The end of a run: validate and save the last step unless that was just done."""
        if self._last_val_step != self.step:
            self._validate_and_maybe_best()
        if self.step != session.last_saved or (self.is_main and not (self.out_dir / "last.safetensors").exists()):
            self.save()

    def close(self) -> None:
        D.teardown(self.dist)


# ---- the loop's stop rules and hooks -------------------------------------------------------
class StopRules:
    """When the loop ends. ``bound()``: the step the loop runs to (``max_steps``; with
    ``--max-minutes`` the end of the cosine schedule, re-planned for the budget). ``check()`` after
    every step: "max_steps" at ``max_steps``; with ``--max-minutes`` "max_minutes" when the planned
    schedule is complete or the budget is spent (every DDP rank agrees); None to go on."""

    def __init__(self, trainer: "Trainer"):
        self.t = trainer

    def bound(self) -> int:
        return self.t.schedule.total if self.t.cfg.max_minutes is not None else self.t.cfg.max_steps

    def check(self) -> str | None:
        t, cfg = self.t, self.t.cfg
        why = "max_steps" if t.step >= cfg.max_steps else None
        if cfg.max_minutes is not None:
            if t.schedule_planned and t.step >= t.schedule.total:
                why = "max_minutes"   # the schedule fitted to the budget is complete
            if D.any_flag(t.dist, t._elapsed_s() / 60 >= cfg.max_minutes, t.device):
                why = "max_minutes"
        return why


@dataclass
class _Session:
    """This fit() call's counters: steps taken, when the first ended (schedule planning), the last
    step saved."""

    last_saved: int
    steps: int = 0
    t_first_step: float | None = None
    t_plan: float | None = None          # when the schedule was planned in this session
    steps_at_plan: int = 0


class _TensorBoard:
    """Rank 0's TensorBoard writer (``TrainConfig.tensorboard``; RUN/tb, a resumed run purges what
    came after its step); the training scalars every ``log_interval`` steps (validation writes its
    own through ``Trainer.writer``)."""

    def __init__(self, t: "Trainer"):
        t._writer = None
        if t.is_main and t.cfg.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
                t._writer = SummaryWriter(str(t.out_dir / "tb"), purge_step=t.step or None)
            except ImportError:  # tensorboard not installed: scalars still go to metrics.jsonl
                t._writer = None
        self.t = t

    def after_step(self, t: "Trainer", terms: dict) -> None:
        if t.is_main and t.step % max(1, t.cfg.log_interval) == 0:
            t._log_scalars("train", {**terms, "lr": t.scheduler.get_last_lr()[0]})

    def close(self, reason: str) -> None:
        if self.t._writer is not None:
            self.t._writer.close()
            self.t._writer = None


class _SigtermAsInterrupt:
    """While the loop runs, SIGTERM on rank 0's main thread raises KeyboardInterrupt (checkpoint, exit)."""

    def __init__(self, t: "Trainer"):
        self.old = None
        if t.is_main and threading_is_main():
            self.old = signal.signal(signal.SIGTERM, _raise_interrupt)

    def after_step(self, t: "Trainer", terms: dict) -> None:
        pass

    def close(self, reason: str) -> None:
        if self.old is not None:
            signal.signal(signal.SIGTERM, self.old)


class _ProgressBar:
    """Rank 0's tqdm bar (``TrainConfig.progress``): a tick per step, loss and learning rate every
    ``log_interval`` steps; its total follows a ``--max-minutes`` plan."""

    def __init__(self, t: "Trainer"):
        self.bar = None
        if t.is_main and t.cfg.progress:
            from tqdm import tqdm
            self.bar = tqdm(total=t.cfg.max_steps, initial=t.step, desc="train", dynamic_ncols=True,
                            file=sys.stderr, leave=True)

    def planned(self, total: int) -> None:
        if self.bar is not None:
            self.bar.total = total
            self.bar.refresh()

    def after_step(self, t: "Trainer", terms: dict) -> None:
        if self.bar is None:
            return
        self.bar.update(1)
        if t.step % max(1, t.cfg.log_interval) == 0 or t.step == 1:
            self.bar.set_postfix(loss=f"{terms['total']:.4g}", lr=f"{t.scheduler.get_last_lr()[0]:.2e}")

    def close(self, reason: str) -> None:
        if self.bar is not None:
            self.bar.close()


class _Callbacks:
    """The caller's ``callbacks``: ``cb(trainer, step, terms)`` after every step."""

    def __init__(self, t: "Trainer"):
        self.callbacks = t.callbacks

    def after_step(self, t: "Trainer", terms: dict) -> None:
        for cb in self.callbacks:
            cb(t, t.step, terms)

    def close(self, reason: str) -> None:
        pass


class _TestHooks:
    """``FOCALSTACK_KILL_AT_STEP=k``: exit at once after step k without saving (like SIGKILL);
    ``FOCALSTACK_DUMP_WEIGHTS=DIR``: each rank writes DIR/rank{r}.sha256 of its weights at the end of
    a run that was not interrupted."""

    def __init__(self, t: "Trainer"):
        self.kill_at = _env_int("FOCALSTACK_KILL_AT_STEP")
        self.t = t

    def after_step(self, t: "Trainer", terms: dict) -> None:
        if self.kill_at is not None and t.step == self.kill_at:
            os._exit(137)

    def close(self, reason: str) -> None:
        dump = os.environ.get("FOCALSTACK_DUMP_WEIGHTS")
        if dump and reason != "interrupted":
            Path(dump).mkdir(parents=True, exist_ok=True)
            (Path(dump) / f"rank{self.t.dist.rank}.sha256").write_text(weights_digest(self.t.model) + "\n")


class _SessionHooks:
    """The hooks of one fit() call, run after every step in this order and closed in reverse at the
    end (also on an error): signals, progress, TensorBoard, the caller's callbacks, test hooks."""

    def __init__(self, t: "Trainer"):
        self.hooks: list = []
        try:
            for cls in (_SigtermAsInterrupt, _ProgressBar, _TensorBoard, _Callbacks, _TestHooks):
                self.hooks.append(cls(t))
        except BaseException:
            self.close("interrupted")
            raise
        self.progress = self.hooks[1]

    def planned(self, total: int) -> None:
        self.progress.planned(total)

    def after_step(self, t: "Trainer", terms: dict) -> None:
        for h in self.hooks:
            h.after_step(t, terms)

    def close(self, reason: str) -> None:
        for h in reversed(self.hooks):
            h.close(reason)


def threading_is_main() -> bool:
    import threading
    return threading.current_thread() is threading.main_thread()


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def train(cfg: TrainConfig, callbacks: Sequence[Callback] = (), resume: bool | None = None) -> dict:
    """Train (or resume) a run; returns {"step", "reason", "best_val_loss", "metrics", "out_dir"}."""
    t = Trainer(cfg, callbacks=callbacks, resume=resume)
    try:
        return t.fit()
    finally:
        t.close()
