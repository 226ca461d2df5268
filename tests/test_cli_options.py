"""Options generated from config dataclasses (focalstack.cli.options): the generator itself, and the
`train` command's flags — every one it had when they were hand-written, read back into TrainConfig."""

import argparse
from dataclasses import dataclass, field

import pytest

from focalstack.cli import build_parser
from focalstack.cli.options import Options
from focalstack.cli.train import build_config

# the `focalstack train` flags as they were written by hand before the generator
TRAIN_FLAGS = {
    "--out", "--no-strict", "--val", "--max-steps", "--max-minutes", "--supervision", "--teacher",
    "--teacher-iters-scale", "--model", "--init", "--width", "--levels", "--aif-mode", "--variant", "--model-opt",
    "--scale-aug", "--scale-aug-step", "--batch-size", "--crop", "--frames", "--no-flip", "--no-permute", "--lr",
    "--weight-decay", "--warmup", "--grad-clip", "--depth-range", "--kernel-size", "--max-kernel-size",
    "--val-interval", "--ckpt-interval", "--log-interval", "--val-samples", "--workers", "--amp", "--device", "--seed",
    "--w-recon", "--w-aif-guide", "--w-aif-sharp", "--w-smooth", "--smooth-beta", "--w-depth", "--w-aif",
    "--w-render-sharp", "--w-teacher", "--psf", "--render-backend", "--resume", "--restart", "--no-progress",
    "--no-tensorboard", "-h", "--help"}


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


def _train_parser():
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["train"]


def test_train_has_every_flag_it_had():
    p = _train_parser()
    p.format_help()   # the options are generated when the parser is first used
    flags = {s for a in p._actions for s in a.option_strings}
    assert flags == TRAIN_FLAGS


def test_train_options_land_in_the_config(tmp_path):
    p = build_parser()
    args = p.parse_args(["train", str(tmp_path / "d"), "--out", str(tmp_path / "r"), "--init", "none",
                         "--max-steps", "7", "--crop", "0", "0", "--no-flip", "--w-teacher", "0.3", "--teacher",
                         "optimize", "--width", "4", "--model-opt", "cost_window=5", "--no-strict"])
    cfg = build_config(args)
    assert cfg.max_steps == 7 and cfg.crop_size is None and not cfg.hflip and not cfg.vflip and cfg.permute
    assert cfg.loss.teacher == 0.3 and cfg.teacher == "optimize" and not cfg.strict and cfg.init == "none"
    assert cfg.model_cfg == {"width": 4, "levels": 4, "cost_window": 5}
    assert cfg.lr == 5e-4 and cfg.loss.recon == 1.0   # not given: the defaults
