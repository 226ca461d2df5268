"""Options generated from config dataclasses (focalstack.cli.options): the generator itself, and the
`train` and `predict` commands' flags — every one they had when they were hand-written, read back into
TrainConfig and into each prediction method's options dataclass."""

import argparse
from dataclasses import dataclass, field

import pytest

from focalstack.cli import build_parser
from focalstack.cli.options import Options
from focalstack.cli.predict import method_options
from focalstack.cli.train import build_config
from focalstack.inference import (METHOD_OPTIONS, DFDOptions, DFFOptions, NetOptions, OptimizeOptions, PredictOptions,
                                  predict_optimize)

from .conftest import tiny_sample

# the `focalstack train` flags as they were written by hand before the generator (+ --ssim-alpha,
# --teacher-refine-steps and --teacher-trust, added since)
TRAIN_FLAGS = {
    "--out", "--no-strict", "--val", "--max-steps", "--max-minutes", "--supervision", "--teacher",
    "--teacher-iters-scale", "--teacher-refine-steps", "--teacher-trust", "--ssim-alpha", "--model", "--init", "--width", "--levels", "--aif-mode", "--variant", "--model-opt",
    "--scale-aug", "--scale-aug-step", "--batch-size", "--crop", "--frames", "--no-flip", "--no-permute", "--lr",
    "--weight-decay", "--warmup", "--grad-clip", "--depth-range", "--kernel-size", "--max-kernel-size",
    "--val-interval", "--ckpt-interval", "--log-interval", "--val-samples", "--workers", "--amp", "--device", "--seed",
    "--w-recon", "--w-aif-guide", "--w-aif-sharp", "--w-smooth", "--smooth-beta", "--w-depth", "--w-aif",
    "--w-render-sharp", "--w-teacher", "--psf", "--render-backend", "--render-window", "--resume", "--restart", "--no-progress",
    "--no-tensorboard", "-h", "--help"}


# the `focalstack predict` flags as they were written by hand before the generator (--schedule is new)
PREDICT_FLAGS = {"-o", "--out", "--no-strict", "--export", "--method", "--measure", "--window", "--no-guided-filter",
                 "--iters-scale", "--threads", "--checkpoint", "--refine", "--tile", "--scale", "--device", "-h", "--help"}


@dataclass
class _Cfg:
    name: str = field(default="", metadata={"flag": "name", "help": "positional"})
    steps: int = field(default=3, metadata={"flag": "--steps", "help": "an int"})
    rate: float | None = field(default=None, metadata={"flag": "--rate"})
    size: tuple[int, int] | None = field(default=None, metadata={"flag": "--size", "metavar": ("H", "W")})
    mode: str = field(default="a", metadata={"flag": "--mode", "choices": ("a", "b")})
    flip: bool = field(default=True, metadata={"flag": "--no-flip", "negate": True, "also": ("flop",)})
    flop: bool = True
    hidden: int = 7


def test_generator_types_choices_switches_and_given():
    p = argparse.ArgumentParser()
    opts = Options(_Cfg, "x_")
    opts.add_to(p)
    assert opts.given(p.parse_args(["n"])) == {"name": "n"}          # nothing else given: the config decides
    got = opts.given(p.parse_args(["n", "--steps", "5", "--rate", "0.5", "--size", "4", "6", "--mode", "b",
                                   "--no-flip"]))
    assert got == {"name": "n", "steps": 5, "rate": 0.5, "size": [4, 6], "mode": "b", "flip": False, "flop": False}
    assert isinstance(got["steps"], int) and isinstance(got["rate"], float)
    with pytest.raises(SystemExit):
        p.parse_args(["n", "--mode", "c"])
    assert "--hidden" not in p.format_help() and "--steps STEPS" in p.format_help()


def _parser(command):
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[command]


def test_train_has_every_flag_it_had():
    p = _parser("train")
    p.format_help()   # the options are generated when the parser is first used
    flags = {s for a in p._actions for s in a.option_strings}
    assert flags == TRAIN_FLAGS | {"--stated-range", "--crop-context", "--crop-cache-gb"}


def test_train_options_land_in_the_config(tmp_path):
    p = build_parser()
    args = p.parse_args(["train", str(tmp_path / "d"), "--out", str(tmp_path / "r"), "--init", "none",
                         "--max-steps", "7", "--crop", "0", "0", "--no-flip", "--w-teacher", "0.3", "--teacher",
                         "optimize", "--width", "4", "--model-opt", "cost_window=5", "--no-strict", "--stated-range",
                         "--crop-context", "crop", "--crop-cache-gb", "0.5"])
    cfg = build_config(args)
    assert not cfg.evidence_view and cfg.crop_context == "crop" and cfg.crop_cache_gb == 0.5
    assert cfg.max_steps == 7 and cfg.crop_size is None and not cfg.hflip and not cfg.vflip and cfg.permute
    assert cfg.loss.teacher == 0.3 and cfg.teacher == "optimize" and not cfg.strict and cfg.init == "none"
    assert cfg.model_cfg == {"width": 4, "levels": 4, "cost_window": 5}
    assert cfg.lr == 5e-4 and cfg.loss.recon == 1.0   # not given: the defaults


def test_predict_has_every_flag_it_had_and_schedule():
    p = _parser("predict")
    p.format_help()
    flags = {s for a in p._actions for s in a.option_strings}
    assert flags == PREDICT_FLAGS | {"--schedule", "--stated-range"}


def test_predict_options_land_in_the_methods_dataclass():
    p = build_parser()
    argv = ["predict", "in", "-o", "out", "--window", "5", "--no-guided-filter", "--threads", "2", "--schedule",
            "reference", "--refine", "7", "--tile", "64"]
    got = {m: method_options(m, p.parse_args(argv)) for m in METHOD_OPTIONS}
    assert got == {"dff": DFFOptions(window=5, guided_filter=False), "dfd": DFDOptions(),
                   "optimize": OptimizeOptions(window=5, guided_filter=False, threads=2, schedule="reference"),
                   "net": NetOptions(refine_steps=7, tile=64)}
    stated = p.parse_args(["predict", "in", "-o", "out", "--stated-range"])   # one switch, every range reader
    assert method_options("dfd", stated) == DFDOptions(range_from_evidence=False)
    assert method_options("net", stated) == NetOptions(range_from_evidence=False)
    assert method_options("optimize", stated) == OptimizeOptions(range_from_evidence=False)
    assert method_options("optimize", p.parse_args(["predict", "in", "-o", "out"])) == OptimizeOptions()
    with pytest.raises(SystemExit):
        p.parse_args(["predict", "in", "-o", "out", "--schedule", "slow"])


def test_method_options_from_any_object():
    from types import SimpleNamespace
    both = PredictOptions(focus_known=False, checkpoint="ck", refine_steps=3)
    assert all(isinstance(both, cls) for cls in METHOD_OPTIONS.values())   # one object for whichever method
    assert OptimizeOptions.of(both) is both and NetOptions.of(None) == NetOptions()
    assert OptimizeOptions.of(SimpleNamespace(threads=2, window=None, device="cuda")) == OptimizeOptions(threads=2)


def test_optimize_schedule_reaches_the_optimiser(monkeypatch):
    import focalstack.optimize

    seen = []

    def fake(frames, camera, cfg, **kw):
        seen.append(cfg)
        raise RuntimeError("stop")

    monkeypatch.setattr(focalstack.optimize, "optimize_stack", fake)
    for schedule in ("reference", "fast"):
        with pytest.raises(RuntimeError, match="stop"):
            predict_optimize(tiny_sample(0), OptimizeOptions(schedule=schedule, window=5, guided_filter=False))
    assert [c.schedule for c in seen] == ["reference", "fast"]
    from focalstack.inference.options import SCHEDULES
    assert set(SCHEDULES) == set(focalstack.optimize.SCHEDULES)   # --schedule offers what the optimiser accepts
    assert seen[0].window == 5 and seen[0].refine is None


def test_no_guided_filter_reaches_depth_from_focus(tmp_path):
    """--no-guided-filter gives the unfiltered DFF depth (before the typed options the stringly look-up
    turned its None back into "guided", so the switch did nothing)."""
    import numpy as np

    from focalstack.classical import depth_from_focus
    from focalstack.cli import main
    from focalstack.data import load_sample, save_sample
    save_sample(tiny_sample(0), tmp_path / "s")
    s = load_sample(tmp_path / "s")   # the frames as predict reads them (8-bit files)
    assert main(["predict", str(tmp_path / "s"), "-o", str(tmp_path / "p"), "--method", "dff",
                 "--no-guided-filter"]) == 0
    plain = depth_from_focus(s.frames, s.camera, refine=None).depth_m[0, 0].numpy()
    guided = depth_from_focus(s.frames, s.camera).depth_m[0, 0].numpy()
    got = np.load(tmp_path / "p" / "depth.npy")
    assert np.allclose(got, plain, rtol=1e-6, atol=1e-6) and not np.allclose(got, guided, rtol=1e-6, atol=1e-6)
