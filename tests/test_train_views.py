"""Training reads every stack at the view predict gives it (focalstack.train.views)."""

import json
from pathlib import Path

import pytest
import torch

from focalstack.data import FocalStackSample, save_sample
from focalstack.train import TrainConfig, train

from .test_dfd import _nyuv2_cam, _ramp_scene
from .test_predict_cli import _portrait_cam

HW = 160


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> Path:
    """Two stacks through the NYUv2 camera stated as 0.1–10 m (a loose bracket around a 1.2–3 m
    surface) and two through the 85 mm f/1.8 portrait camera (σ up to ~10 px: beyond the band)."""
    root = tmp_path_factory.mktemp("views") / "ds"
    for i, cam in enumerate([_nyuv2_cam(), _nyuv2_cam(), _portrait_cam(), _portrait_cam()]):
        frames, depth = _ramp_scene(cam, hw=HW, seed=i)
        save_sample(FocalStackSample(frames, cam, depth, None), root / f"s{i}")
    return root


def _cfg(data, out, **kw) -> TrainConfig:
    base = dict(data_dir=str(data), out_dir=str(out), model_cfg={"width": 8, "levels": 3}, batch_size=2,
                crop_size=(96, 96), num_workers=0, warmup_steps=1, max_steps=2, val_interval=2, ckpt_interval=2,
                val_max_samples=4, progress=False, tensorboard=False, seed=1, init="none", max_kernel_size=9)
    base.update(kw)
    return TrainConfig(**base)


def test_stack_view_is_predicts_range_and_scale_never_below_the_crop():
    from focalstack.classical.dfd import evidence_depth_range
    from focalstack.inference.scale import working_stack
    from focalstack.train.views import stack_view
    cam = _nyuv2_cam()
    frames, _ = _ramp_scene(cam, hw=HW)
    v = stack_view(frames, cam, (0.1, 10.0))
    assert v.depth_range_m == pytest.approx(evidence_depth_range(frames, cam, (0.1, 10.0)))
    assert 0.1 < v.depth_range_m[0] < 1.2 and 3.0 < v.depth_range_m[1] < 10.0
    pc = _portrait_cam()
    pf, _ = _ramp_scene(pc, hw=HW)
    pv = stack_view(pf, pc, (0.5, 10.0))
    assert pv.scale == working_stack(pf, pc, (0.5, 10.0)).scale < 1                    # as predict reads it
    assert pv.scale == 128 / HW                                          # predict: 128 px on the long side at least
    assert stack_view(pf, pc, (0.5, 10.0), (136, 136)).scale == pytest.approx(136 / HW)  # the crop still fits
    assert stack_view(pf, pc, (0.5, 10.0), (150, 150)).scale == 1.0                      # < 10 % smaller: as it is
    from dataclasses import replace
    blind = stack_view(pf, replace(pc, lens_known=False), (0.5, 10.0))   # a placeholder lens: nothing to read
    assert blind.depth_range_m == (0.5, 10.0) and blind.scale == 1.0


def test_dataset_resizes_each_stack_by_its_scale_before_the_crop(mixed):
    from focalstack.data import FocalStackDataset, StackAugment
    ds = FocalStackDataset(mixed, StackAugment(crop_size=(64, 64), hflip=False, vflip=False))
    full = ds[2]
    ds.set_scales([1.0, 1.0, 0.5, 1.0])
    half = ds[2]
    assert half["frames"].shape[-2:] == (64, 64)
    assert half["camera"]["pixel_size_m"] == pytest.approx(2 * full["camera"]["pixel_size_m"])   # σ in px halves
    ds.augment = StackAugment()
    whole = ds[2]
    assert whole["frames"].shape[-2:] == (HW // 2, HW // 2) and whole["depth"].shape[-2:] == (HW // 2, HW // 2)
    from focalstack.render.light import resize_stack
    from focalstack.data import load_sample
    s = load_sample(mixed / "s2")
    assert torch.equal(whole["frames"], resize_stack(s.frames, s.camera, 0.5)[0])
    with pytest.raises(ValueError, match="one scale per sample"):
        ds.set_scales([1.0])


def test_training_reads_the_evidence_range_and_the_working_scale_and_resumes_them(mixed, tmp_path):
    from focalstack.train.views import VIEWS_FILE
    run = tmp_path / "run"
    train(_cfg(mixed, run))
    views = json.loads((run / VIEWS_FILE).read_text())
    tr = views["train"]
    for k in ("s0", "s1"):        # the loose bracket narrowed around the 1.2–3 m surface, at full size
        near, far = tr[k]["depth_range_m"]
        assert 0.1 < near < 1.2 and 3.0 < far < 10.0 and tr[k]["scale"] == 1.0
    for k in ("s2", "s3"):        # strong blur: read at a working scale, never below the 96-px crop
        assert 96 / HW <= tr[k]["scale"] < 1
    assert views["val"] == tr                                     # validation reads the same stacks alike
    meta = json.loads((run / "last.json").read_text())
    assert meta["depth_range_source"] == "evidence" and meta["depth_range_m"] is None   # predict reads it alike
    # a resumed run takes the views it began with (here: one edited by hand), not new ones
    views["train"]["s0"]["depth_range_m"] = [0.7, 5.0]
    (run / VIEWS_FILE).write_text(json.dumps(views))
    from focalstack.train.trainer import Trainer
    t = Trainer(_cfg(mixed, run, max_steps=3))
    assert t.train_ranges[0].tolist() == pytest.approx([0.7, 5.0])
    assert t.val_ds_full.scales[2] == views["val"]["s2"]["scale"] < 1 and t.train_ds.scales[2] < 1
    t.close()
    views["settings"]["band_px"] = 9.0
    (run / VIEWS_FILE).write_text(json.dumps(views))
    with pytest.raises(ValueError, match="views made with other settings"):
        Trainer(_cfg(mixed, run, max_steps=3))
    assert Trainer(_cfg(mixed, run, max_steps=3), resume=False).train_ranges[0].tolist() != pytest.approx([0.7, 5.0])


def test_stated_range_trains_over_each_cameras_range_at_its_own_size(mixed, tmp_path):
    from focalstack.train.trainer import Trainer
    from focalstack.train.views import VIEWS_FILE
    t = Trainer(_cfg(mixed, tmp_path / "run", evidence_view=False))
    assert t.train_ranges.flatten().tolist() == pytest.approx([0.1, 10.0, 0.1, 10.0, 0.5, 10.0, 0.5, 10.0])
    assert t.train_ds.scales is None and t.meta()["depth_range_source"] == "camera"
    t.close()
    assert not (tmp_path / "run" / VIEWS_FILE).exists()
    # the render window follows the blur the network is trained on: smaller at the working scale
    wide = [Trainer(_cfg(mixed, tmp_path / f"k{on}", evidence_view=on, max_kernel_size=999)) for on in (False, True)]
    assert wide[1].kernel_size < wide[0].kernel_size
    from focalstack.train.trainer import choose_kernel_size   # … than the same ranges would need at full size
    assert wide[1].kernel_size < choose_kernel_size(wide[1].train_cams, wide[1].train_ranges.tolist(), 999)
    for t in wide:
        t.close()
    whole = Trainer(_cfg(mixed, tmp_path / "whole", crop_size=None))   # whole frames: the range only, no resize
    assert whole.train_ds.scales is None and whole.train_ranges[0, 0] > 0.1
    whole.close()
    fixed = Trainer(_cfg(mixed, tmp_path / "fixed", depth_range=(0.5, 8.0)))   # --depth-range: no views either
    assert fixed.train_ranges.flatten().tolist() == [0.5, 8.0] * 4 and fixed.train_ds.scales is None
    fixed.close()


def test_the_anchor_label_is_the_prediction_predict_makes(mixed):
    """--teacher refine --teacher-refine-steps 0 with the run's views: the label is the network's depth as
    ``predict --method net`` gives it (evidence range, working scale, back to full size)."""
    from focalstack.data import load_sample
    from focalstack.inference import get_method
    from focalstack.inference.network import load_cached
    from focalstack.train.teacher import TeacherConfig, label_stack
    from focalstack.train.views import stack_view
    model, _ = load_cached("shipped")
    for name in ("s0", "s2"):
        s = load_sample(mixed / name)
        view = stack_view(s.frames, s.camera, s.camera.effective_depth_range_m())
        lab = label_stack(s.frames, s.camera, TeacherConfig(kind="refine", refine_steps=0), model, view=view)
        pred = get_method("net")(s, None)
        assert pred.extras["depth_range_m"] == pytest.approx(list(view.depth_range_m))
        assert pred.extras["scale"] == view.scale
        assert torch.allclose(lab["inv_depth"], 1.0 / pred.depth_m.view(HW, HW), rtol=1e-5)
    # --teacher refine N: the label is predict --refine N's depth (refined at the working scale too)
    from types import SimpleNamespace
    lab = label_stack(s.frames, s.camera, TeacherConfig(kind="refine", refine_steps=3), model, view=view)
    pred = get_method("net")(s, SimpleNamespace(refine_steps=3))
    assert view.scale < 1 and torch.allclose(lab["inv_depth"], 1.0 / pred.depth_m.view(HW, HW), rtol=1e-5)


def test_a_run_from_before_the_views_resumes_over_the_stated_ranges(mixed, tmp_path):
    """``--stated-range`` on the command line, and a run whose config.json predates the option, train
    over each camera's stated range (resuming such a run exactly as it began)."""
    from focalstack.cli import build_parser
    from focalstack.cli.train import build_config
    run = tmp_path / "run"
    train(_cfg(mixed, run, evidence_view=False, max_steps=1))
    c = json.loads((run / "config.json").read_text())
    del c["evidence_view"], c["crop_context"]
    (run / "config.json").write_text(json.dumps(c))
    old = build_config(build_parser().parse_args(["train", str(mixed), "--out", str(run)]))
    assert old.evidence_view is False and old.crop_context == "crop"   # crops read alone, as before the option
    fresh = build_config(build_parser().parse_args(["train", str(mixed), "--out", str(tmp_path / "new")]))
    assert fresh.evidence_view is True and fresh.crop_context == "view"


def test_teacher_trust_compares_the_hypotheses_of_the_views_range():
    """The trust's distinctness is measured among the hypotheses the network reads (the view's range),
    not over the loose stated bracket."""
    from dataclasses import replace

    from focalstack.train.teacher import label_weight
    cam = _nyuv2_cam()
    frames, depth = _ramp_scene(cam, hw=96)
    inv = 1.0 / depth
    w_stated = label_weight(frames, cam, inv, frames, trust="evidence")
    w_view = label_weight(frames, cam, inv, frames, trust="evidence", depth_range_m=(0.4, 9.0))
    assert torch.equal(w_view, label_weight(frames, replace(cam, depth_range_m=(0.4, 9.0)), inv, frames, trust="evidence"))
    assert not torch.allclose(w_view, w_stated, atol=0.05)


def test_a_run_with_a_teacher_labels_its_stacks_at_their_views(mixed, tmp_path):
    from safetensors.torch import load_file
    run = tmp_path / "run"
    train(_cfg(mixed, run, teacher="refine", teacher_refine_steps=0, max_steps=1))
    assert json.loads((run / "teacher" / "teacher.json").read_text())["evidence_view"] is True
    assert load_file(str(run / "teacher" / "s2.safetensors"))["inv_depth"].shape == (HW, HW)   # back at full size


def test_the_optimize_label_searches_the_views_range_as_predict_does(mixed, tmp_path, monkeypatch):
    """--teacher optimize with the run's views: the optimiser runs inside the view's range, as
    ``predict --method optimize`` does, and the label cache records it (caches from before: stated range)."""
    import focalstack.optimize as opt
    from focalstack.data import load_sample
    from focalstack.train.teacher import TeacherConfig, label_dataset, label_stack
    from focalstack.train.views import stack_view
    seen = []
    real = opt.optimize_stack
    monkeypatch.setattr(opt, "optimize_stack", lambda frames, camera, *a, **k: seen.append(camera.depth_range_m)
                        or real(frames, camera, *a, **k))
    s = load_sample(mixed / "s0")
    view = stack_view(s.frames, s.camera, s.camera.effective_depth_range_m())
    assert view.depth_range_m != (0.1, 10.0)
    cfg = TeacherConfig(kind="optimize", iters_scale=0.05)
    label_stack(s.frames, s.camera, cfg, view=view)
    label_stack(s.frames, s.camera, cfg)
    assert seen == [tuple(view.depth_range_m), (0.1, 10.0)]
    out = label_dataset([mixed / "s0"], tmp_path / "t", cfg, progress=False, views=[view])
    assert json.loads((out / "teacher.json").read_text())["optimize_view_range"] is True
