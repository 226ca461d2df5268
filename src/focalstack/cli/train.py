"""``focalstack train DATA_DIR --out RUN_DIR``: train DAIF-Net on focal stacks (no ground truth needed).

``--model`` picks another registered model (``aifdepthnet``, ``ddfs``, ``gurwolf``; see
``focalstack.models.MODELS``); a fresh run of a model other than daifnet starts from that model's own
default config (``--width``/``--levels``/``--model-opt KEY=VALUE`` override it) and from its
``LOSS_DEFAULTS`` loss weights if it declares any (``--w-*`` override them).

The options are generated (:mod:`focalstack.cli.options`) from the fields of ``TrainConfig``,
``LossConfig`` and ``DAIFNetConfig``, whose metadata holds each flag and its help.

Re-running with the same ``--out`` resumes exactly where the run stopped, with the run's saved
settings (options given again override them; ``--restart`` starts over). Multi-GPU / multi-process:
``torchrun --nproc_per_node=N -m focalstack train ...`` (DistributedDataParallel).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from .options import Options, fill_when_used


def _options():
    """The generated options: TrainConfig's fields, the model's own flags (DAIFNetConfig: --width,
    --levels, --aif-mode, --variant; width and levels apply to every model), LossConfig's weights."""
    from ..losses import LossConfig
    from ..models import DAIFNetConfig
    from ..train.config import TrainConfig
    return Options(TrainConfig), Options(DAIFNetConfig, "model_"), Options(LossConfig, "loss_")


def register(sub) -> None:
    p = sub.add_parser("train", help="train a depth + all-in-focus network (self-supervised by default)",
                       description=__doc__.split("\n\n")[0])
    p.set_defaults(func=run)
    fill_when_used(p, _add_options)   # generated on first use: the config classes import the models


def _add_options(p) -> None:
    train, model, loss = _options()
    train.add_to(p)
    model.add_to(p)
    p.add_argument("--model-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="a field of the model's options dataclass (focalstack.models: DAIFNetConfig, "
                        "AiFDepthNetConfig, DDFSConfig, GurWolfConfig), typed by it "
                        "(e.g. num_hypotheses=32, psf=disk, space=metric); repeatable")
    loss.add_to(p.add_argument_group("loss weights (0 disables a term)"))
    r = p.add_mutually_exclusive_group()
    r.add_argument("--resume", action="store_true", help="require a run to resume in --out")
    r.add_argument("--restart", action="store_true", help="start over even if --out holds a run")


# the settings of a checkpoint's own objective that a run fine-tuning it continues with
INIT_OBJECTIVE = ("teacher", "teacher_refine_steps", "teacher_iters_scale", "teacher_trust")


def _adopt_init_model(base: dict, init: str, model_named: bool) -> None:
    """--init on a fresh run: the checkpoint's model and settings unless the command names them
    (``model_named``; ``auto``: the shipped model's, when it is camera-general)."""
    from ..checkpoint import model_spec, resolve_checkpoint, resolve_init, shipped_is_general
    if init == "auto" and not shipped_is_general():
        return
    path = resolve_init("shipped" if init == "auto" else init)
    if path is None:
        return
    _, side = resolve_checkpoint(path)
    spec = model_spec(json.loads(side.read_text()))
    if not model_named:
        base["model"] = spec.get("name", base["model"])
        base["model_cfg"] = dict(spec.get("cfg", {}))


def _adopt_init_teacher(base: dict, given_loss: dict) -> None:
    """A fresh run that starts from a checkpoint's weights continues that checkpoint's teacher
    (:data:`INIT_OBJECTIVE` and its weight; the caller skips this when ``--teacher`` is given): the
    shipped general model, pretrained with an anchor to its initialisation, is fine-tuned with the
    anchor too. Without it the re-rendering loss alone pulls that model off where the anchor held it
    (12 minutes on the 35 mm validation camera, the previous shipped model: δ1 0.917 → 0.829, with
    it 0.911; README "Any camera")."""
    from ..checkpoint import resolve_checkpoint, resolve_init
    path = resolve_init(base["init"], base["model"], base["model_cfg"])   # what the trainer will load
    if path is None:
        return
    cfg = json.loads(resolve_checkpoint(path)[1].read_text()).get("config") or {}
    if cfg.get("teacher"):   # TrainConfig accepts a teacher only with self-supervision
        base.update({k: cfg[k] for k in INIT_OBJECTIVE if k in cfg})
        if "teacher" in (cfg.get("loss") or {}) and "teacher" not in given_loss:   # a weight given wins
            base["loss"]["teacher"] = cfg["loss"]["teacher"]


def build_config(args):
    """The run's TrainConfig: the saved one of a run being resumed (else the defaults), with what the
    command line gives laid over it."""
    from ..data.io import claim_output_dir
    from ..models import model_class, model_config, recorded_options
    from ..train.config import TrainConfig
    train, model, loss = _options()
    given, given_model, given_loss = train.given(args), model.given(args), loss.given(args)
    out = Path(given.pop("out_dir"))
    data_dir = given.pop("data_dir")
    init = given.pop("init", None)               # read by a fresh run only
    strict = given.pop("strict", True)           # from this command line, not the saved run
    if given.get("crop_size") == [0, 0]:
        given["crop_size"] = None                # --crop 0 0: full frames
    # a config.json is read back only from a run folder focalstack wrote (checked before reading it)
    claim_output_dir(out, "run", [data_dir, given.get("val_dir")], create=False)
    saved = out / "config.json"
    fresh = args.restart or not saved.is_file()
    base = TrainConfig().to_dict() if fresh else json.loads(saved.read_text())
    if not fresh:
        base.setdefault("evidence_view", False)   # a run from before the views read each camera's stated range
        base.setdefault("crop_context", "crop")   # a run from before crops read their whole stack's cost prior
    if fresh:
        base["init"] = init or "auto"
        _adopt_init_model(base, base["init"], bool(given.get("model") or given_model or args.model_opt))
    if fresh and given.get("model") and given["model"] != base.get("model"):
        base["model_cfg"] = {}  # the model's own defaults (the daifnet defaults need not apply)
        base["loss"].update(model_class(given["model"]).LOSS_DEFAULTS)
    base.update(given, data_dir=str(data_dir), out_dir=str(out), strict=strict)
    base["loss"].update(given_loss)
    options = model_class(base["model"]).Config
    saved_mc = base.get("model_cfg") or {}
    if not fresh:   # a run saved before an option existed resumes with the value it was made with
        saved_mc = recorded_options(base["model"], saved_mc)
    mc = {**saved_mc, **given_model}
    for opt in args.model_opt or []:   # a field of the model's options dataclass, typed by it
        key, val = options.parse_option(opt, base["model"])
        mc[key] = val
    model_config(base["model"], mc)     # unknown or bad options: one line naming the valid ones
    base["model_cfg"] = mc
    # a teacher distils into the self-supervised loss and does not scale: not adopted beside those options
    if fresh and "teacher" not in given and base["supervision"] == "self" and base.get("scale_aug") is None:
        _adopt_init_teacher(base, given_loss)
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
