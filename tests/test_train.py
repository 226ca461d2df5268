import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from focalstack.cli import main as cli_main
from focalstack.data import FocalStackSample, save_sample
from focalstack.losses import LossConfig
from focalstack.models import full_options
from focalstack.optics import get_preset
from focalstack.render import render_stack
from focalstack.train import TrainConfig, load_model, predict_batch, train
from focalstack.train.trainer import choose_kernel_size

K = 7  # renderer window in these tests (speed)
TINY = ["--width", "8", "--levels", "3", "--crop", "24", "24", "--frames", "3", "--batch-size", "2", "--workers", "0",
        "--kernel-size", str(K), "--warmup", "2", "--val-samples", "2", "--no-progress", "--no-tensorboard"]


def make_dataset(root: Path, n: int = 5, hw=(40, 40), with_gt: bool = True, seed: int = 0) -> Path:
    """Random smooth textures over two depth planes, rendered through the procedural camera."""
    cam = get_preset("procedural")
    h, w = hw
    for i in range(n):
        g = torch.Generator().manual_seed(seed * 1000 + i)
        tex = F.interpolate(torch.rand(1, 3, h // 4, w // 4, generator=g), size=hw, mode="bilinear")
        tex = (0.6 * tex + 0.4 * torch.rand(1, 3, h, w, generator=g)).clamp(0, 1)
        d = torch.full((1, 1, h, w), float(0.5 + 3.5 * torch.rand((), generator=g)))
        y0, x0 = (int(v) for v in torch.randint(0, h // 2, (2,), generator=g))
        d[..., y0:y0 + h // 2, x0:x0 + w // 2] = float(0.5 + 3.5 * torch.rand((), generator=g))
        frames = render_stack(tex, d, cam, kernel_size=13)[0]
        save_sample(FocalStackSample(frames, cam, d[0, 0] if with_gt else None, tex[0] if with_gt else None),
                    root / f"s{i:02d}")
    return root


def tiny_cfg(data, out, **kw) -> TrainConfig:
    base = dict(data_dir=str(data), out_dir=str(out), model_cfg={"width": 8, "levels": 3}, batch_size=2,
                crop_size=(24, 24), num_frames=3, num_workers=0, kernel_size=K, warmup_steps=2, max_steps=4,
                val_interval=2, ckpt_interval=2, val_max_samples=2, progress=False, tensorboard=False, seed=3)
    base.update(kw)
    return TrainConfig(**base)


def weights(run: Path) -> dict:
    return load_file(str(run / "last.safetensors"))


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("train") / "ds")


def _check_run_folder(run: Path) -> None:
    for name in ("config.json", "best.safetensors", "best.json", "last.safetensors", "last.json", "state.pt",
                 "metrics.jsonl"):
        assert (run / name).is_file(), name
    meta = json.loads((run / "last.json").read_text())
    # every option recorded, not only those given: a later change of a default cannot change the checkpoint
    assert meta["step"] == 4 and meta["model"] == {"name": "daifnet", "cfg": full_options("daifnet", {"width": 8, "levels": 3})}
    assert meta["model"]["cfg"]["cost_aggregation"] == "gated"
    # each stack read at its evidence range (train/views.py): no fixed range, predict reads the evidence alike
    assert meta["depth_range_m"] is None and meta["depth_range_source"] == "evidence"
    assert meta["cameras"][0]["focus_distances_m"][0] == 0.6
    assert "depth_abs_rel" in meta["metrics"] and "val_loss" in meta["metrics"]
    assert not list(run.glob(".*tmp"))  # atomic writes leave no temporaries
    model, meta2 = load_model(run)
    assert meta2["step"] in (2, 4)  # best by the self-supervised val loss
    last, _ = load_model(run / "last.safetensors")
    assert_same_weights(last.state_dict(), weights(run))
    out = predict_batch(model, torch.rand(5, 3, 33, 41), get_preset("procedural"))
    assert out["depth_m"].shape == (1, 1, 33, 41)


def test_exact_resume(data, tmp_path, capsys):
    """5 samples, batch 2 ⇒ 2 steps per epoch; stopping after step 3 is mid-epoch."""
    base = tmp_path / "base"
    res = train(tiny_cfg(data, base))
    assert res["step"] == 4 and res["reason"] == "max_steps"
    _check_run_folder(base)

    # 1) Ctrl-C-like interrupt from a callback after step 3: state saved, rerun resumes
    out = tmp_path / "run"

    def stop(trainer, step, terms):
        if step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(tiny_cfg(data, out), callbacks=[stop])
    assert json.loads((out / "last.json").read_text())["step"] == 3
    res = train(tiny_cfg(data, out))  # same out dir ⇒ resume
    assert res["step"] == 4
    assert_same_weights(weights(out), weights(base))
    a = torch.load(out / "state.pt", weights_only=False)
    b = torch.load(base / "state.pt", weights_only=False)
    for k, v in a["optimizer"]["state"].items():
        assert torch.equal(v["exp_avg_sq"], b["optimizer"]["state"][k]["exp_avg_sq"])
    assert a["scheduler"] == b["scheduler"]
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])

    # 2) hard kill (no save) of the CLI after step 3: rerunning resumes from the step-2 checkpoint
    out = tmp_path / "cli"
    args = [sys.executable, "-m", "focalstack", "train", str(data), "--out", str(out), *TINY,
            "--max-steps", "4", "--val-interval", "2", "--ckpt-interval", "2", "--seed", "3"]
    env = {**os.environ, "FOCALSTACK_KILL_AT_STEP": "3"}
    r = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 137, r.stderr[-2000:]
    assert torch.load(out / "state.pt", weights_only=False)["step"] == 2
    capsys.readouterr()
    assert cli_main(args[3:]) == 0  # the same command again (in-process: saves an interpreter start)
    assert "step 4" in capsys.readouterr().err
    assert_same_weights(weights(out), weights(base))


def test_loss_falls(data, tmp_path):
    """From random weights (the paper variant) training lowers the loss; the camera variant starts
    where the paper variant cannot get in 20 steps: its untrained depth is the cost-volume argmin."""
    losses, cam_losses = [], []
    kw = dict(max_steps=20, lr=2e-3, val_interval=0, ckpt_interval=0, hflip=False, vflip=False, permute=False,
              loss=LossConfig(aif_sharp=0.0))
    cfg = tiny_cfg(data, tmp_path / "run", model_cfg={"width": 8, "levels": 3, "variant": "paper"}, **kw)
    train(cfg, callbacks=[lambda t, s, terms: losses.append(terms["total"])])
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < 0.7 * first, losses
    train(tiny_cfg(data, tmp_path / "cam", **{**kw, "max_steps": 1}),
          callbacks=[lambda t, s, terms: cam_losses.append(terms["total"])])
    assert cam_losses[0] < first, (cam_losses, losses)


def test_max_minutes_and_tensorboard(data, tmp_path):
    out = tmp_path / "run"
    res = train(tiny_cfg(data, out, max_steps=1000, max_minutes=1e-4, tensorboard=True))
    assert res["reason"] == "max_minutes" and res["step"] < 1000
    model, meta = load_model(out)
    assert meta["step"] == res["step"]
    assert list((out / "tb").glob("events.out.tfevents.*"))


@pytest.mark.parametrize("mode", ["depth", "aif"])
def test_supervised_modes_run(data, tmp_path, mode):
    res = train(tiny_cfg(data, tmp_path / "run", supervision=mode, max_steps=2))
    assert res["step"] == 2
    meta = json.loads((tmp_path / "run" / "last.json").read_text())
    assert meta["supervision"] == mode


def test_depth_supervision_without_depth_is_a_clear_error(tmp_path, capsys):
    ds = make_dataset(tmp_path / "nogt", n=2, with_gt=False)
    rc = cli_main(["train", str(ds), "--out", str(tmp_path / "run"), "--supervision", "depth", *TINY,
                   "--max-steps", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "depth.npy" in err[0]
    # self-supervision is fine without any ground truth
    rc = cli_main(["train", str(ds), "--out", str(tmp_path / "run2"), *TINY, "--max-steps", "1"])
    assert rc == 0 and (tmp_path / "run2" / "best.safetensors").is_file()


def test_kernel_size_choice():
    cam = get_preset("procedural")
    k = choose_kernel_size([cam], [(0.5, 4.0)], cap=99)
    smax = float(cam.sigma_px(torch.tensor([0.5, 4.0]).view(2, 1, 1, 1)).max())
    assert k % 2 == 1 and (k // 2) >= 3 * smax > (k // 2) - 1
    assert choose_kernel_size([get_preset("nyuv2_dered")], [(0.1, 10.0)], cap=21) == 21


def test_ddp_two_processes_hold_identical_weights(data, tmp_path):
    out, dump = tmp_path / "run", tmp_path / "dump"
    env = {**os.environ, "FOCALSTACK_DUMP_WEIGHTS": str(dump), "OMP_NUM_THREADS": "1"}
    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "focalstack",
            "train", str(data), "--out", str(out), *TINY, "--max-steps", "3", "--val-interval", "2",
            "--ckpt-interval", "2"]
    r = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    h0 = (dump / "rank0.sha256").read_text().strip()
    h1 = (dump / "rank1.sha256").read_text().strip()
    assert h0 == h1
    meta = json.loads((out / "last.json").read_text())
    assert meta["weights_sha256"] == h0 and meta["step"] == 3


def test_malformed_sample_stops_training_up_front_with_one_line(tiny_dataset, tmp_path, capsys):
    """A corrupt frame anywhere in the dataset is reported (file + problem) before any step runs,
    not as a traceback from a DataLoader worker, and no run folder is left behind."""
    (tiny_dataset / "s002" / "frame_03.png").write_bytes(b"not a png")
    out = tmp_path / "run"
    assert cli_main(["train", str(tiny_dataset), "--out", str(out), "--max-steps", "2", "--workers", "1",
                     "--width", "2", "--levels", "1", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "s002/frame_03.png" in err[0] and "not a readable image" in err[0]
    assert not out.exists()


def test_plan_total_steps():
    from focalstack.train.trainer import plan_total_steps
    # 0.5 s/step, 100 s left, 85 % headroom → 170 more steps after step 11
    assert plan_total_steps(11, 0.5, 100.0, 20000, headroom=0.85) == 181
    assert plan_total_steps(11, 0.5, 100.0, 50) == 50          # never past --max-steps
    assert plan_total_steps(11, 0.5, -5.0, 20000) == 12        # budget already spent: end now


def test_max_minutes_fits_the_schedule_to_the_budget(data, tmp_path, capsys):
    """A 20 000-step schedule under a small time budget is re-planned from the measured speed, so
    the LR has decayed (not stopped at its peak) when the time is up; the plan survives a resume."""
    from focalstack.train.trainer import PLAN_AFTER_STEPS, Trainer
    lrs = []
    cfg = tiny_cfg(data, tmp_path / "run", max_steps=20000, max_minutes=0.15, warmup_steps=100,
                   val_interval=0, ckpt_interval=0)
    tr = Trainer(cfg, callbacks=[lambda t, step, terms: lrs.append(t.scheduler.get_last_lr()[0])])
    res = tr.fit()
    tr.close()
    planned = tr.schedule.total
    err = capsys.readouterr().err
    assert "cosine schedule planned to end at step" in err
    # and planned once more from the steady speed when a quarter of the budget is spent
    assert "cosine schedule re-planned to end at step" in err and tr.schedule_replanned
    assert PLAN_AFTER_STEPS < planned < 20000 and res["reason"] == "max_minutes"
    # the warm-up was shortened by the first plan (the re-plan leaves it: the LR must not jump)
    import re
    first = int(re.search(r"cosine schedule planned to end at step (\d+)", err).group(1))
    assert tr.schedule.warmup <= max(1, first // 10)
    peak = max(lrs)
    # the LR rose to its peak and then decayed (without the fit it would still be warming up
    # towards a 20 000-step cosine); the margin allows a machine that slows down after planning
    assert lrs.index(peak) < len(lrs) - 1 and lrs[-1] < 0.8 * peak, (lrs[-1], peak, res["step"], planned)
    st = torch.load(tmp_path / "run" / "state.pt", weights_only=False)
    assert st["schedule_planned"] and st["schedule_replanned"] and st["scheduler"]["lr_lambdas"][0]["total"] == planned
    assert st["train_seconds"] > 0
    # the sidecar records it too (benchmarks read a run's training time there, summed over resumes)
    assert json.loads((tmp_path / "run" / "last.json").read_text())["train_seconds"] == pytest.approx(st["train_seconds"], abs=0.2)
    # resumed: the saved plan is used (no re-planning), and the spent budget counts
    tr2 = Trainer(cfg)
    tr2.load_state_dict(st)
    assert tr2.schedule.total == planned and tr2.schedule_planned
    tr2.close()


def test_max_minutes_replans_a_plan_made_from_slow_first_steps(data, tmp_path, monkeypatch, capsys):
    """First steps 10× slower than the rest (a fresh install compiling renderer kernels): the first
    plan ends the schedule early, so the re-plan must come after a quarter of the *planned steps*,
    not wait for a quarter of the budget, which the short plan would never reach. A fake clock
    (train_step advances it, trains nothing) keeps the test exact and fast."""
    import types
    from focalstack.train import trainer as T
    clock = [0.0]
    monkeypatch.setattr(T, "time", types.SimpleNamespace(monotonic=lambda: clock[0]))
    tr = T.Trainer(tiny_cfg(data, tmp_path / "run", max_steps=100000, max_minutes=6.0, warmup_steps=1,
                            val_interval=0, ckpt_interval=0))

    def fake_step(batch):
        clock[0] += 5.0 if tr.step < 11 else 0.5      # 5 s for the first 11 steps, then 0.5 s
        return {"total": torch.zeros(())}

    monkeypatch.setattr(tr, "train_step", fake_step)
    res = tr.fit()
    tr.close()
    err = capsys.readouterr().err
    import re
    first = int(re.search(r"cosine schedule planned to end at step (\d+)", err).group(1))
    again = re.search(r"over steps \d+–(\d+); cosine schedule re-planned to end at step (\d+)", err)
    # planned from 5 s/step: 0.85 · (360 − 55) s / 5 s = 51 more steps, which 0.5-s steps finish at
    # 80 s, before a quarter of the 360-s budget (90 s): without the plan-share trigger the run stops there
    assert first == 11 + 51
    replan_step, total = int(again.group(1)), int(again.group(2))
    assert replan_step == 11 + math.ceil(T.REPLAN_AT_PLAN * 51)
    assert total > 5 * first and res["step"] == total and res["reason"] == "max_minutes"
    assert clock[0] <= 360.0 + 0.5                     # and the budget still holds


def test_init_starts_from_a_checkpoint_and_adopts_its_model(data, tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    assert cli_main(["train", str(data), "--out", str(a), "--max-steps", "2", *TINY]) == 0
    # --max-steps 0: nothing trained, so the new run's weights are exactly the init's
    assert cli_main(["train", str(data), "--out", str(b), "--max-steps", "0", "--init",
                     str(a / "last.safetensors"), *TINY]) == 0
    assert_same_weights(weights(b), weights(a))
    assert json.loads((b / "config.json").read_text())["init"] == str(a / "last.safetensors")
    # without model options the checkpoint's model and settings are adopted (shipped: DAIF-Net width 8)
    c = tmp_path / "c"
    tiny_no_model = TINY[4:]
    assert TINY[:4] == ["--width", "8", "--levels", "3"]
    assert cli_main(["train", str(data), "--out", str(c), "--max-steps", "0", "--init", "shipped",
                     *tiny_no_model]) == 0
    from focalstack.checkpoint import shipped_model_spec
    shipped = shipped_model_spec()
    assert json.loads((c / "last.json").read_text())["model"] == shipped
    capsys.readouterr()
    # a conflicting model option is one line naming both settings
    assert cli_main(["train", str(data), "--out", str(tmp_path / "d"), "--max-steps", "1", "--init", str(a),
                     "--width", "4", *TINY[2:]]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--init" in err[0] and "'width': 8" in err[0] and "'width': 4" in err[0]
    assert cli_main(["train", str(data), "--out", str(tmp_path / "e"), "--init", str(tmp_path / "nope")]) == 2
    assert "--init checkpoint not found" in capsys.readouterr().err


# ---- optimiser distillation (--teacher optimize) --------------------------------------------------
def test_teacher_labels_are_cached_resumable_and_trusted_where_texture_is(tmp_path):
    from focalstack.data import list_samples, load_sample
    from focalstack.train.teacher import TeacherConfig, label_dataset, label_stack, load_label

    cam = get_preset("procedural")
    h, w = 40, 48
    tex = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0))
    tex[..., :, : w // 2] = 0.5                                  # left half flat: no defocus evidence
    d = torch.full((1, 1, h, w), 1.5)
    frames = render_stack(tex, d, cam, kernel_size=13)[0]
    lab = label_stack(frames, cam, TeacherConfig(iters_scale=0.25))
    assert set(lab) == {"inv_depth", "weight"} and lab["weight"].shape == (h, w)
    wt = lab["weight"]
    assert float(wt.min()) >= 0 and float(wt.max()) <= 1
    assert float(wt[:, w // 2 + 8:].mean()) > 3 * float(wt[:, : w // 2 - 8].mean()) + 1e-3
    # where trusted, the label is near the true depth
    inv = lab["inv_depth"][:, w // 2 + 8:]
    assert abs(float(inv.median()) - 1 / 1.5) < 0.1

    root = make_dataset(tmp_path / "ds", n=2, hw=(24, 24))
    out = tmp_path / "run" / "teacher"
    cfg = TeacherConfig(iters_scale=0.1)
    label_dataset(list_samples(root), out, cfg, progress=False)
    files = sorted(out.glob("*.safetensors"))
    assert [f.stem for f in files] == ["s00", "s01"]
    first = load_label(files[0])
    assert first["inv_depth"].shape == load_sample(root / "s00").size_hw
    # resumable: a deleted label is recomputed, an existing one is kept as it is
    stamp = files[1].stat().st_mtime_ns
    files[0].unlink()
    label_dataset(list_samples(root), out, cfg, progress=False)
    assert files[0].is_file() and files[1].stat().st_mtime_ns == stamp
    with pytest.raises(ValueError, match="other teacher settings"):
        label_dataset(list_samples(root), out, TeacherConfig(iters_scale=0.2), progress=False)


def test_teacher_weight_needs_evidence_an_8bit_frame_can_record():
    """Distinctness is a ratio: a lens whose blur barely changes with depth (σ ≪ 1 px, a phone)
    still looks decisive on texture. The evidence ramp scales the weight by the absolute margin in
    grey levels, so such a stack is trusted far less than the same scene under a DSLR-like blur."""
    from dataclasses import replace
    from focalstack.train.teacher import label_weight

    strong = get_preset("procedural")
    weak = replace(strong, f_numbers=None, lens=replace(strong.lens, f_number=strong.lens.f_number * 8))
    h, w = 40, 48
    tex = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(1))
    d = torch.full((1, 1, h, w), 1.5)
    inv = torch.full((h, w), 1 / 1.5)
    out = {}
    for name, cam in (("strong", strong), ("weak", weak)):
        frames = render_stack(tex, d, cam, kernel_size=13)[0]
        out[name] = [float(label_weight(frames, cam, inv, frames, min_evidence=m)[8:-8, 8:-8].mean())
                     for m in (0.0, 1 / 255)]
    # without the ramp the weak lens (f/16: margins below one code value) looks as decisive as the
    # strong one; with it, it loses its trust ...
    assert out["weak"][0] > 0.5 and out["weak"][1] < 0.1 * out["weak"][0]
    # ... while the strong lens, whose margins are many code values, keeps its own
    assert out["strong"][1] > 0.8 * out["strong"][0] > 0.1


def test_weak_evidence_trust_holds_the_label_only_where_the_defocus_cannot_decide():
    """--teacher-trust weak-evidence = fit × (1 − distinctness × evidence): an anchor that lets go on a
    textured pixel under a DSLR-like blur (the loss decides there) and holds on a flat one, and on
    texture a lens barely blurs (f/16 here, margins below one 8-bit code value); ``fit`` holds
    everywhere, ``evidence`` is its exact opposite in the distinctness factor."""
    from dataclasses import replace
    from focalstack.train.teacher import TeacherConfig, label_weight

    strong = get_preset("procedural")
    weak = replace(strong, f_numbers=None, lens=replace(strong.lens, f_number=strong.lens.f_number * 8))
    h, w = 40, 64
    tex = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(1))
    tex[..., w // 2:] = 0.5                                       # right half flat
    d = torch.full((1, 1, h, w), 1.5)
    inv = torch.full((h, w), 1 / 1.5)
    textured, flat = (slice(8, -8), slice(8, w // 2 - 8)), (slice(8, -8), slice(w // 2 + 8, -8))
    out = {}
    for name, cam in (("strong", strong), ("weak", weak)):
        frames = render_stack(tex, d, cam, kernel_size=13)[0]
        wt = {trust: label_weight(frames, cam, inv, frames, trust=trust)
              for trust in ("fit", "evidence", "weak-evidence")}
        # the two evidence trusts split the fit between them
        torch.testing.assert_close(wt["weak-evidence"] + wt["evidence"], wt["fit"])
        for trust, v in wt.items():
            out[name, trust] = (float(v[textured].mean()), float(v[flat].mean()))
    assert out["strong", "weak-evidence"][0] < 0.3 < 0.9 < out["strong", "weak-evidence"][1]
    assert out["weak", "weak-evidence"][0] > 0.8 and out["strong", "fit"][0] > 0.9
    assert TeacherConfig(kind="refine", refine_steps=0).weight_trust == "fit"
    assert TeacherConfig().weight_trust == "evidence" and "trust" not in TeacherConfig().to_dict()
    with pytest.raises(ValueError, match="trust"):
        TeacherConfig(trust="maybe")


def test_train_with_teacher_distils_the_cached_labels(data, tmp_path):
    seen = []
    cfg = tiny_cfg(data, tmp_path / "run", teacher="optimize", teacher_iters_scale=0.1, max_steps=2)
    train(cfg, callbacks=[lambda t, s, terms: seen.append(terms)])
    assert len(list((tmp_path / "run" / "teacher").glob("*.safetensors"))) == 5
    assert all("teacher" in t and t["teacher"] > 0 for t in seen)
    with pytest.raises(ValueError, match="supervision self"):
        tiny_cfg(data, tmp_path / "x", teacher="optimize", supervision="depth")


def test_refine_teacher_labels_the_refined_network_and_trusts_its_flat_regions(tmp_path):
    """--teacher refine: the label is the network's depth refined by the optimiser (predict --refine),
    so it starts from the network and its re-rendering error is no worse; the trust is the fit alone,
    so a flat region (where the optimiser teacher's trust is ~0) keeps its label."""
    from focalstack.inference.network import run_network
    from focalstack.models import build_model
    from focalstack.optimize import optimize_stack
    from focalstack.train.teacher import TeacherConfig, label_stack

    cam = get_preset("procedural")
    h, w = 40, 48
    tex = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0))
    tex[..., :, : w // 2] = 0.5                                   # left half flat
    frames = render_stack(tex, torch.full((1, 1, h, w), 1.5), cam, kernel_size=13)[0]
    torch.manual_seed(0)
    model = build_model("daifnet", width=4, levels=2, hypotheses=8).eval()
    with pytest.raises(ValueError, match="needs the network"):
        label_stack(frames, cam, TeacherConfig(kind="refine", refine_steps=5))
    lab = label_stack(frames, cam, TeacherConfig(kind="refine", refine_steps=5), model)
    opt = label_stack(frames, cam, TeacherConfig(iters_scale=0.25))
    flat = (slice(None), slice(4, w // 2 - 8))
    assert float(opt["weight"][flat].mean()) < 0.05 < 0.3 < float(lab["weight"][flat].mean())
    # the label is the refinement of the network's own depth: the same as predict --refine from it
    depth, _ = run_network(model, frames, cam, cam.effective_depth_range_m())
    net_inv = 1.0 / depth
    assert torch.isfinite(lab["inv_depth"]).all() and not torch.allclose(lab["inv_depth"], net_inv)
    assert float((lab["inv_depth"] - net_inv).abs().median()) < float((opt["inv_depth"] - net_inv).abs().median())
    assert "refine_steps" in TeacherConfig(kind="refine").to_dict() and "refine_steps" not in TeacherConfig().to_dict()


def test_train_with_refine_teacher(data, tmp_path):
    seen = []
    cfg = tiny_cfg(data, tmp_path / "run", teacher="refine", teacher_refine_steps=3, max_steps=2)
    train(cfg, callbacks=[lambda t, s, terms: seen.append(terms)])
    meta = json.loads((tmp_path / "run" / "teacher" / "teacher.json").read_text())
    assert meta["kind"] == "refine" and meta["refine_steps"] == 3
    assert len(list((tmp_path / "run" / "teacher").glob("*.safetensors"))) == 5
    assert all("teacher" in t and t["teacher"] > 0 for t in seen)
    with pytest.raises(ValueError, match="teacher_refine_steps"):
        tiny_cfg(data, tmp_path / "x", teacher="refine", teacher_refine_steps=-1)


def test_the_teacher_renders_with_the_runs_psf(data, tmp_path, monkeypatch):
    """train --psf X: the teacher's optimiser renders with X too, and its cache records it (labels made
    under one image-formation model are not another's)."""
    from dataclasses import replace
    from focalstack.render.psf import PSFS
    from focalstack.train import teacher as T
    from focalstack.optimize import OptimizeConfig
    assert "psf" not in T.TeacherConfig().to_dict() and T.TeacherConfig(psf="disk").to_dict()["psf"] == "disk"
    seen = []
    real = T.label_stack

    def spy(frames, camera, cfg, *a, **k):
        seen.append(cfg.psf)
        return real(frames, camera, cfg, *a, **k)
    monkeypatch.setattr(T, "label_stack", spy)
    used = []
    import focalstack.optimize as O
    real_opt = O.optimize_stack
    monkeypatch.setattr(O, "optimize_stack", lambda f, c, ocfg=None, **k: used.append(ocfg.psf) or real_opt(f, c, ocfg, **k))
    cfg = tiny_cfg(data, tmp_path / "run", teacher="refine", teacher_refine_steps=2, max_steps=1)
    cfg = replace(cfg, loss=replace(cfg.loss, psf="gaussian_matched"))
    train(cfg)
    meta = json.loads((tmp_path / "run" / "teacher" / "teacher.json").read_text())
    assert meta["psf"] == "gaussian_matched" and set(seen) == {"gaussian_matched"} and set(used) == {"gaussian_matched"}
    assert "gaussian_matched" in PSFS and OptimizeConfig().psf == "gaussian"


def test_refine_teacher_with_zero_steps_anchors_to_the_initial_network(tmp_path):
    """--teacher-refine-steps 0: the label is the initial network's own depth, unrefined, and its
    trust is the fit of the network's own re-rendering (high on a stack it re-renders well)."""
    from focalstack.inference.network import run_network
    from focalstack.models import build_model
    from focalstack.train.teacher import TeacherConfig, label_stack

    cam = get_preset("procedural")
    h, w = 32, 40
    tex = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(1))
    frames = render_stack(tex, torch.full((1, 1, h, w), 1.2), cam, kernel_size=13)[0]
    torch.manual_seed(0)
    model = build_model("daifnet", width=4, levels=2, hypotheses=8).eval()
    lab = label_stack(frames, cam, TeacherConfig(kind="refine", refine_steps=0), model)
    depth, _ = run_network(model, frames, cam, cam.effective_depth_range_m())
    torch.testing.assert_close(lab["inv_depth"], 1.0 / depth)
    assert lab["weight"].shape == (h, w) and 0.2 < float(lab["weight"].mean()) <= 1.0


def test_fine_tuning_a_checkpoint_continues_its_teacher_unless_told_otherwise(data, tmp_path):
    """A fresh run from --init CHECKPOINT adopts that checkpoint's teacher (the pretrained general
    model's anchor, --teacher refine --teacher-refine-steps 0) and its weight, unless the command
    gives --teacher, or a supervision / scale augmentation a teacher cannot be combined with."""
    pre = tmp_path / "pre"
    assert cli_main(["train", str(data), "--out", str(pre), "--max-steps", "1", "--init", "none", "--teacher", "refine",
                     "--teacher-refine-steps", "0", "--teacher-trust", "weak-evidence", "--w-teacher", "0.2", *TINY]) == 0
    init = str(pre / "last.safetensors")

    def cfg_of(name, *extra):
        run = tmp_path / name
        assert cli_main(["train", str(data), "--out", str(run), "--max-steps", "0", "--init", init, *extra, *TINY]) == 0
        return json.loads((run / "config.json").read_text())

    c = cfg_of("ft")
    assert (c["teacher"], c["teacher_refine_steps"], c["teacher_trust"], c["loss"]["teacher"]) == \
        ("refine", 0, "weak-evidence", 0.2)
    meta = json.loads((tmp_path / "ft" / "teacher" / "teacher.json").read_text())   # the anchor's labels were made
    assert (meta["refine_steps"], meta["trust"]) == (0, "weak-evidence")
    assert cfg_of("ft_w", "--w-teacher", "0.05")["loss"]["teacher"] == 0.05   # a weight given wins
    assert cfg_of("ft_none", "--teacher", "none")["teacher"] is None
    assert cfg_of("ft_depth", "--supervision", "depth")["teacher"] is None
    plain = tmp_path / "plain"
    assert cli_main(["train", str(data), "--out", str(plain), "--max-steps", "1", "--init", "none", *TINY]) == 0
    run = tmp_path / "ft_plain"                                                 # a checkpoint without one
    assert cli_main(["train", str(data), "--out", str(run), "--max-steps", "0", "--init", str(plain / "last.safetensors"),
                     *TINY]) == 0
    assert json.loads((run / "config.json").read_text())["teacher"] is None


def test_mixed_stack_sizes_train_in_one_batch(tmp_path):
    root = make_dataset(tmp_path / "ds", n=2, hw=(24, 24))
    from focalstack.data import load_sample
    s = load_sample(root / "s01")
    save_sample(s.subset([0, 2, 4]), tmp_path / "ds3" / "three")   # a 3-frame stack beside 5-frame ones
    save_sample(load_sample(root / "s00"), tmp_path / "ds3" / "five")
    res = train(tiny_cfg(tmp_path / "ds3", tmp_path / "run", num_frames=None, batch_size=2, max_steps=2))
    assert res["step"] == 2


@pytest.mark.parametrize("context", ["view", "crop"])
def test_crops_read_the_cost_prior_of_their_whole_stack(data, tmp_path, monkeypatch, context):
    """--crop-context view (default): every training crop reaches DAIF-Net with the whole 40×40 stack it was
    cut from (its cost prior is computed there, as predict computes it); ``crop``: with none. Validation
    stacks are whole and carry none."""
    from focalstack.models.daifnet import DAIFNet
    seen = []
    orig = DAIFNet._camera_inputs

    caches = []

    def spy(self, frames, camera, rng, view=None):
        seen.append((tuple(frames.shape[-2:]), None if view is None else {tuple(s.shape[-2:]) for s in view.frames}))
        caches.append(None if view is None else view.cache)
        return orig(self, frames, camera, rng, view)

    monkeypatch.setattr(DAIFNet, "_camera_inputs", spy)
    train(tiny_cfg(data, tmp_path / "run", max_steps=2, val_interval=100, ckpt_interval=100, crop_context=context,
                   num_frames=None))
    crops = [v for hw, v in seen if hw == (24, 24)]
    assert len(crops) == 2 and all(v == ({(40, 40)} if context == "view" else None) for v in crops)
    if context == "view":   # each whole stack's maps computed once and kept: 2 steps × 2 crops of 4 stacks
        assert 2 <= len(caches[0]) <= 4 and caches[0].nbytes > 0
        # --scale-aug rescales each step's camera, which a whole stack's prior would not follow: crops alone
        from focalstack.train.trainer import Trainer
        t = Trainer(tiny_cfg(data, tmp_path / "sa", scale_aug=(1.0, 2.0), depth_range=(0.3, 10.0)))
        assert t.train_ds.augment.crop_view is False
    assert all(v is None for hw, v in seen if hw == (40, 40))
    with pytest.raises(ValueError, match="crop_context must be one of view, crop"):
        tiny_cfg(data, tmp_path / "x", crop_context="tile")


def test_default_init_is_the_shipped_model_only_when_it_is_camera_general(data, tmp_path, monkeypatch):
    import focalstack.checkpoint as C
    from focalstack.checkpoint import resolve_init
    assert TrainConfig().init == "auto"
    # a camera-aware run standing in for the shipped general model
    general = tmp_path / "general"
    assert cli_main(["train", str(data), "--out", str(general), "--max-steps", "1", "--init", "none", *TINY]) == 0
    spec = json.loads((general / "last.json").read_text())["model"]
    assert spec["cfg"].get("variant", "camera") == "camera"
    monkeypatch.setattr(C, "shipped_checkpoint", lambda: general / "last.safetensors")
    assert C.shipped_is_general()
    assert resolve_init("auto", "daifnet", spec["cfg"]) == general / "last.safetensors"
    assert resolve_init("auto", "daifnet", {**spec["cfg"], "width": 4}) is None       # other settings: random
    # `train` without model options fine-tunes the shipped general model (its settings adopted)
    run = tmp_path / "ft"
    assert cli_main(["train", str(data), "--out", str(run), "--max-steps", "0", *TINY[4:]]) == 0
    assert json.loads((run / "last.json").read_text())["model"] == spec
    assert_same_weights(weights(run), weights(general))
    # the paper-variant checkpoint is not a general starting point: auto → random weights
    monkeypatch.setattr(C, "shipped_model_spec", lambda: {"name": "daifnet", "cfg": {"width": 8, "variant": "paper"}})
    assert not C.shipped_is_general() and resolve_init("auto", "daifnet", {"width": 8, "variant": "paper"}) is None


def test_runs_checkpoints_and_teacher_labels_record_the_light_they_were_made_in(data, tmp_path, monkeypatch):
    """focalstack.render.light: a run made in one light is not resumed in the other (half a run in each
    would be neither), a checkpoint loads in the other light with a one-line warning, teacher labels
    are not reused in the other light; what records no light was made in "encoded" light."""
    import warnings

    import focalstack.render.light as light
    from focalstack.data import list_samples
    from focalstack.train.teacher import TeacherConfig, label_dataset
    assert light.PHYSICS_LIGHT == "linear"
    out = tmp_path / "run"
    train(tiny_cfg(data, out, max_steps=2))
    assert json.loads((out / "last.json").read_text())["physics_light"] == "linear"
    assert torch.load(out / "state.pt", weights_only=False)["physics_light"] == "linear"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_model(out)                                       # same light: silent
    monkeypatch.setattr(light, "PHYSICS_LIGHT", "encoded")
    with pytest.warns(UserWarning, match="trained with the optics blurring linear light, this run blurs encoded"):
        load_model(out)
    with pytest.raises(ValueError, match="renders in linear light, this process in encoded light"):
        train(tiny_cfg(data, out, max_steps=4))
    # a checkpoint that records no light was made in encoded light
    side = json.loads((out / "last.json").read_text())
    del side["physics_light"]
    (out / "last.json").write_text(json.dumps(side))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_model(out / "last.json")
    monkeypatch.setattr(light, "PHYSICS_LIGHT", "linear")
    labels = tmp_path / "teacher"
    samples = list_samples(data)[:1]
    label_dataset(samples, labels, TeacherConfig(iters_scale=0.1), progress=False)
    monkeypatch.setattr(light, "PHYSICS_LIGHT", "encoded")
    with pytest.raises(ValueError, match="other teacher settings"):
        label_dataset(samples, labels, TeacherConfig(iters_scale=0.1), progress=False)
