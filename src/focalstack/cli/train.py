"""``focalstack train DATA_DIR --out RUN_DIR``: train DAIF-Net on focal stacks (no ground truth needed).

``--model`` picks another registered model (``aifdepthnet``, ``ddfs``, ``gurwolf``; see
``focalstack.models.MODELS``); a fresh run of a model other than daifnet starts from that model's own
default config (``--width``/``--levels``/``--model-opt KEY=VALUE`` override it) and from its
``LOSS_DEFAULTS`` loss weights if it declares any (``--w-*`` override them).

Re-running with the same ``--out`` resumes exactly where the run stopped, with the run's saved
settings (options given again override them; ``--restart`` starts over). Multi-GPU / multi-process:
``torchrun --nproc_per_node=N -m focalstack train ...`` (DistributedDataParallel).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

# option dest → TrainConfig field (None = not a direct field)
_DIRECT = ["teacher", "teacher_iters_scale", "val_dir", "max_steps", "max_minutes", "supervision", "model", "batch_size", "num_frames", "lr",
           "weight_decay", "warmup_steps", "seed", "kernel_size", "max_kernel_size", "val_interval",
           "ckpt_interval", "log_interval", "val_max_samples", "num_workers", "amp", "device", "grad_clip"]
_LOSS = {"w_recon": "recon", "w_aif_guide": "aif_guide", "w_aif_sharp": "aif_sharp", "w_smooth": "smooth",
         "smooth_beta": "smooth_beta", "w_depth": "depth_l1", "w_aif": "aif_l1", "psf": "psf",
         "render_backend": "render_backend", "w_render_sharp": "render_sharp", "w_teacher": "teacher"}
_MODEL = {"width": "width", "levels": "levels", "aif_mode": "aif_mode", "variant": "variant"}


def register(sub) -> None:
    p = sub.add_parser("train", help="train a depth + all-in-focus network (self-supervised by default)",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("data_dir", help="folder of sample folders (camera.json + frame_NN.png each)")
    p.add_argument("--out", required=True, help="run folder (checkpoints, TensorBoard, config): new, empty, or "
                                                "an earlier focalstack run (resumed)")
    p.add_argument("--no-strict", dest="strict", action="store_false",
                   help="skip (with a warning) sub-folders that hold frames but no camera.json instead of stopping")
    p.add_argument("--val", dest="val_dir", help="validation folder (default: the first training samples)")
    p.add_argument("--max-steps", type=int)
    p.add_argument("--max-minutes", type=float,
                   help="time budget (training wall time, summed over resumes): the cosine schedule is fitted "
                        "to it from the speed of the first steps, and the run stops with a checkpoint when it is "
                        "spent")
    p.add_argument("--supervision", choices=["self", "depth", "aif"],
                   help="self (default, no ground truth), depth (needs depth.npy), aif (needs aif.png)")
    p.add_argument("--teacher", choices=["optimize", "none"],
                   help="optimize: label every training stack once with the zero-shot optimiser (cached in "
                        "RUN/teacher, resumable) and distil those pseudo-labels, weighted by their per-pixel trust, "
                        "with the re-rendering loss; no ground truth is used")
    p.add_argument("--teacher-iters-scale", type=float, help="× the optimiser's iterations for the labels (default 1)")
    p.add_argument("--model", help="model name: daifnet (default), aifdepthnet, ddfs, gurwolf")
    p.add_argument("--init", help="initial weights of a fresh run: auto (default: the shipped model when it is the "
                                  "camera-general one and the model options are its own), none (random), shipped (the package's "
                                  "checkpoint), or a run folder / .safetensors; the model and its settings are "
                                  "taken from that checkpoint unless given")
    p.add_argument("--width", type=int, help="model width W (default 16)")
    p.add_argument("--levels", type=int, help="model levels D (default 4)")
    p.add_argument("--aif-mode", choices=["select", "direct"], help="AIF head (default select)")
    p.add_argument("--variant", choices=["camera", "paper"],
                   help="DAIF-Net variant: camera (camera-aware, one set of weights for any camera; default) or "
                        "paper (the core paper's focus-position input, tied to the training camera)")
    p.add_argument("--model-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="a field of the model's options dataclass (focalstack.models: DAIFNetConfig, "
                        "AiFDepthNetConfig, DDFSConfig, GurWolfConfig), typed by it "
                        "(e.g. num_hypotheses=32, psf=disk, space=metric); repeatable")
    p.add_argument("--scale-aug", type=float, nargs=2, metavar=("MIN", "MAX"),
                   help="DDFS scale augmentation: scene + camera × s, s in {MIN, MIN+step, …, MAX} "
                        "(needs --depth-range)")
    p.add_argument("--scale-aug-step", type=float, help="step of the --scale-aug grid (default 0.5)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--crop", type=int, nargs=2, metavar=("H", "W"), help="random crop (0 0 = full frames)")
    p.add_argument("--frames", dest="num_frames", type=int, help="use a random subset of K frames per stack")
    p.add_argument("--no-flip", action="store_true", help="no random flips")
    p.add_argument("--no-permute", action="store_true", help="keep the stack order")
    p.add_argument("--lr", type=float)
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--warmup", dest="warmup_steps", type=int)
    p.add_argument("--grad-clip", type=float)
    p.add_argument("--depth-range", type=float, nargs=2, metavar=("NEAR", "FAR"),
                   help="metres (default: the camera's depth_range_m, else derived from its focus distances)")
    p.add_argument("--kernel-size", type=int, help="renderer window (default: from the largest blur, capped)")
    p.add_argument("--max-kernel-size", type=int)
    p.add_argument("--val-interval", type=int)
    p.add_argument("--ckpt-interval", type=int)
    p.add_argument("--log-interval", type=int)
    p.add_argument("--val-samples", dest="val_max_samples", type=int)
    p.add_argument("--workers", dest="num_workers", type=int)
    p.add_argument("--amp", choices=["auto", "off", "bf16", "fp16"])
    p.add_argument("--device", help="auto (default), cpu, cuda, cuda:1 ...")
    p.add_argument("--seed", type=int)
    g = p.add_argument_group("loss weights (0 disables a term)")
    g.add_argument("--w-recon", type=float)
    g.add_argument("--w-aif-guide", type=float)
    g.add_argument("--w-aif-sharp", type=float)
    g.add_argument("--w-smooth", type=float)
    g.add_argument("--smooth-beta", type=float)
    g.add_argument("--w-depth", type=float)
    g.add_argument("--w-aif", type=float)
    g.add_argument("--w-render-sharp", type=float, help="Gur & Wolf sharpness of the re-rendered frames")
    g.add_argument("--w-teacher", type=float, help="optimiser pseudo-labels (with --teacher optimize; default 0.1)")
    g.add_argument("--psf", choices=["gaussian", "disk"])
    g.add_argument("--render-backend")
    r = p.add_mutually_exclusive_group()
    r.add_argument("--resume", action="store_true", help="require a run to resume in --out")
    r.add_argument("--restart", action="store_true", help="start over even if --out holds a run")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--no-tensorboard", action="store_true")
    p.set_defaults(func=run)


def _adopt_init_model(base: dict, args, init: str) -> None:
    """--init on a fresh run: the checkpoint's model and settings unless the command names them
    (``auto``: the shipped model's, when it is camera-general)."""
    from ..checkpoint import resolve_checkpoint, resolve_init, shipped_is_general
    if init == "auto" and not shipped_is_general():
        return
    path = resolve_init("shipped" if init == "auto" else init)
    if path is None:
        return
    _, side = resolve_checkpoint(path)
    spec = json.loads(side.read_text()).get("model") or {}
    if not (args.model or args.width or args.levels or args.aif_mode or args.variant or args.model_opt):
        base["model"] = spec.get("name", base["model"])
        base["model_cfg"] = dict(spec.get("cfg", {}))


def build_config(args):
    from ..data.io import claim_output_dir
    from ..train.config import TrainConfig
    out = Path(args.out)
    # a config.json is read back only from a run folder focalstack wrote (checked before reading it)
    claim_output_dir(out, "run", [args.data_dir, args.val_dir], create=False)
    saved = out / "config.json"
    if saved.is_file() and not args.restart:
        base = json.loads(saved.read_text())
    else:
        base = TrainConfig().to_dict()
    fresh = not (saved.is_file() and not args.restart)
    if fresh:
        base["init"] = args.init or "auto"
        _adopt_init_model(base, args, base["init"])
    from ..models import model_class, model_config
    if fresh and args.model and args.model != base.get("model"):
        base["model_cfg"] = {}  # the model's own defaults (the daifnet defaults need not apply)
        for k, v in model_class(args.model).LOSS_DEFAULTS.items():
            base["loss"][k] = v
    base["data_dir"] = str(args.data_dir)
    base["out_dir"] = str(out)
    for k in _DIRECT:
        v = getattr(args, k, None)
        if v is not None:
            base[k] = v
    for k, f in _LOSS.items():
        v = getattr(args, k, None)
        if v is not None:
            base["loss"][f] = v
    mc = dict(base.get("model_cfg") or {})
    for k, f in _MODEL.items():
        v = getattr(args, k, None)
        if v is not None:
            mc[f] = v
    options = model_class(base["model"]).Config
    for opt in args.model_opt or []:   # a field of the model's options dataclass, typed by it
        key, val = options.parse_option(opt, base["model"])
        mc[key] = val
    model_config(base["model"], mc)     # unknown or bad options: one line naming the valid ones
    base["model_cfg"] = mc
    if args.crop is not None:
        base["crop_size"] = None if args.crop == [0, 0] else list(args.crop)
    if args.depth_range is not None:
        base["depth_range"] = list(args.depth_range)
    if args.scale_aug is not None:
        base["scale_aug"] = list(args.scale_aug)
    if args.scale_aug_step is not None:
        base["scale_aug_step"] = args.scale_aug_step
    if args.no_flip:
        base["hflip"] = base["vflip"] = False
    if args.no_permute:
        base["permute"] = False
    if args.no_progress:
        base["progress"] = False
    if args.no_tensorboard:
        base["tensorboard"] = False
    base["strict"] = args.strict
    return TrainConfig.from_dict(base)


def run(args) -> int:
    from ..train.trainer import train
    cfg = build_config(args)
    resume = True if args.resume else (False if args.restart else None)
    res = train(cfg, resume=resume)
    if int(os.environ.get("RANK", "0")) == 0:
        m = res.get("metrics") or {}
        extra = "".join(f", {k} {m[k]:.4g}" for k in ("val_loss", "depth_abs_rel", "depth_rmse", "depth_delta1")
                        if isinstance(m.get(k), (int, float)))
        print(f"focalstack train: {res['reason']} at step {res['step']}{extra}; checkpoints in {res['out_dir']}",
              file=sys.stderr)
    return 0
