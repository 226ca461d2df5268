"""`focalstack synth`: writes loadable samples, resumes, splits deterministically, one-line errors."""

import json
from pathlib import Path

import numpy as np
import pytest

from focalstack.cli import main
from focalstack.cli.synth import split_of
from focalstack.data import FocalStackDataset, list_samples, load_sample
from focalstack.optics import get_preset

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def synth(*argv):
    return main(["synth", *map(str, argv), "--quiet"])


def test_writes_n_valid_samples_and_resumes(tmp_path, capsys):
    out = tmp_path / "ds"
    assert synth(out, "--num", 3, "--size", 40, 48, "--seed", 5) == 0
    dirs = list_samples(out)
    assert [d.name for d in dirs] == [f"procedural_0005_{i:06d}" for i in range(3)]
    cam = get_preset("procedural")
    for d in dirs:
        s = load_sample(d)
        assert s.frames.shape == (cam.num_frames, 3, 40, 48)
        assert s.depth_m is not None and s.aif is not None
        near, far = cam.effective_depth_range_m()
        assert near - 1e-5 <= float(s.depth_m.min()) and float(s.depth_m.max()) <= far + 1e-5
        assert s.camera.focus_distances_m == cam.focus_distances_m
    assert len(FocalStackDataset(out)) == 3
    first = np.load(dirs[0] / "depth.npy")
    mtime = (dirs[0] / "frame_00.png").stat().st_mtime_ns
    capsys.readouterr()
    # second run with a larger --num: the 3 complete samples are skipped, 1 new one written
    assert synth(out, "--num", 4, "--size", 40, 48, "--seed", 5) == 0
    msg = capsys.readouterr().out
    assert "skipping 3 complete sample(s)" in msg and "wrote 1, skipped 3" in msg
    assert (dirs[0] / "frame_00.png").stat().st_mtime_ns == mtime
    assert len(list_samples(out)) == 4
    assert np.array_equal(np.load(dirs[0] / "depth.npy"), first)
    # an interrupted sample (left-over temporary folder, incomplete folder) is re-rendered
    import shutil
    shutil.rmtree(dirs[1])
    (out / ".procedural_0005_000001.tmp-123").mkdir()
    assert synth(out, "--num", 4, "--size", 40, 48, "--seed", 5) == 0
    assert "wrote 1, skipped 3" in capsys.readouterr().out
    # different settings in the same folder are refused with one line
    assert synth(out, "--num", 4, "--size", 40, 48, "--seed", 6) == 2
    err = capsys.readouterr().err.strip()
    assert "different settings (seed)" in err and "\n" not in err


def test_split_is_deterministic(tmp_path, capsys):
    out = tmp_path / "ds"
    assert synth(out, "--num", 4, "--size", 24, 24, "--split", 0.25, "--noise", 0) == 0
    train, val = list_samples(out / "train"), list_samples(out / "val")
    assert len(train) == 3 and len(val) == 1
    assert split_of(4, 0.25, 0) == split_of(4, 0.25, 0)
    assert [d.name for d in val] == [f"procedural_0000_{i:06d}" for i, s in enumerate(split_of(4, 0.25, 0))
                                     if s == "val"]
    assert split_of(10, 0.3, 1).count("val") == 3
    settings = json.loads((out / "synth.json").read_text())
    assert settings["split"] == 0.25 and settings["noise"] == 0


def test_split_seed_keeps_the_split_under_another_seed(tmp_path):
    """--split-seed: the scenes of a split stay where they are when --seed draws other cameras/noise
    (re-rendering training scenes must never move a validation scene into train)."""
    n, frac = 6, 0.34
    assert split_of(n, frac, 0) != split_of(n, frac, 3)          # the case where the seed would move it
    out = tmp_path / "ds"
    assert synth(out, "--num", n, "--size", 24, 24, "--split", frac, "--seed", 3, "--split-seed", 0,
                 "--noise", 0, "--quiet") == 0
    val = [d.name for d in list_samples(out / "val")]
    assert val == [f"procedural_0003_{i:06d}" for i, s in enumerate(split_of(n, frac, 0)) if s == "val"]
    assert json.loads((out / "synth.json").read_text())["split_seed"] == 0


def test_camera_file_and_overrides(tmp_path):
    cam = get_preset("defocusnet_dered").resized(0.25)
    cam.save(tmp_path / "cam.json")
    out = tmp_path / "ds"
    assert synth(out, "--num", 1, "--size", 24, 24, "--camera", tmp_path / "cam.json", "--focus", 0.3, 1.2,
                 "--occlusion-aware") == 0
    s = load_sample(list_samples(out)[0])
    assert s.camera.focus_distances_m == (0.3, 1.2) and s.num_frames == 2
    assert s.camera.lens == cam.lens


def one_line_error(capsys, *argv):
    rc = synth(*argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("focalstack synth: error:") and "\n" not in err, err
    return err


def test_one_line_errors(tmp_path, capsys):
    missing = tmp_path / "nope"
    assert str(missing) in one_line_error(capsys, tmp_path / "o", "--source", "folder", "--input", missing)
    assert str(missing) in one_line_error(capsys, tmp_path / "o", "--source", "dslr_indoor", "--input", missing)
    assert "--input" in one_line_error(capsys, tmp_path / "o", "--source", "folder")
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    assert "malformed JSON" in one_line_error(capsys, tmp_path / "o", "--camera", bad)
    bad.write_text('{"focal_length_m": 0.05}')
    assert "missing key" in one_line_error(capsys, tmp_path / "o", "--camera", bad)
    assert "not found" in one_line_error(capsys, tmp_path / "o", "--camera", tmp_path / "none.json")
    assert "unknown camera preset" in one_line_error(capsys, tmp_path / "o", "--preset", "nikon")
    assert "--resize" in one_line_error(capsys, tmp_path / "o", "--source", "middlebury", "--size", 8, 8)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no <name>" in one_line_error(capsys, tmp_path / "o", "--source", "folder", "--input", empty)


def test_middlebury_source_resized(tmp_path):
    root = DATA / "middlebury2014_motorcycle_quarter"
    if not root.is_dir():
        pytest.skip(f"{root} not available")
    out = tmp_path / "mb"
    assert synth(out, "--source", "middlebury", "--input", root, "--resize", 0.1) == 0
    s = load_sample(out / "motorcycle")
    assert s.frames.shape[-2:] == (50, 74)
    from focalstack.data.rgbd import MIDDLEBURY_SYNTH_CAMERA
    assert abs(s.camera.lens.pixel_size_m - MIDDLEBURY_SYNTH_CAMERA.lens.pixel_size_m / 0.1) < 1e-12
    d = s.depth_m
    assert 0.8 < float((d > 0).float().mean()) and 2.0 < float(d[d > 0].min()) and float(d.max()) < 5.2


def test_figures_written_atomically(tmp_path):
    from focalstack.data import write_image
    from focalstack.figures import plot_predictions, plot_sample

    out = tmp_path / "ds"
    assert synth(out, "--num", 2, "--size", 24, 32) == 0
    s = load_sample(list_samples(out)[0])
    p = plot_sample(s, tmp_path / "figs" / "sample.png")
    assert p.is_file() and p.stat().st_size > 1000
    pred = tmp_path / "pred"
    for d in list_samples(out):
        t = load_sample(d)
        (pred / d.name).mkdir(parents=True)
        np.save(pred / d.name / "depth.npy", t.depth_m.numpy())
        write_image(pred / d.name / "aif.png", t.frames[0])
    q = plot_predictions(out, {"oracle": pred, "missing": tmp_path / "none"}, tmp_path / "figs" / "pred.png")
    assert q.is_file()
    assert sorted(x.name for x in (tmp_path / "figs").iterdir()) == ["pred.png", "sample.png"]  # no temp files


def test_encoding_linear_writes_16_bit_linear_frames_of_the_same_stack(tmp_path):
    """--encoding linear: camera.json says linear, the frame files are 16-bit linear light (dark sRGB
    values map to much smaller linear ones), and loaded back they are the sRGB dataset's frames."""
    import cv2
    assert synth(tmp_path / "srgb", "--num", 1, "--size", 32, 40, "--seed", 3) == 0
    assert synth(tmp_path / "lin", "--num", 1, "--size", 32, 40, "--seed", 3, "--encoding", "linear") == 0
    d_s, d_l = list_samples(tmp_path / "srgb")[0], list_samples(tmp_path / "lin")[0]
    assert json.loads((d_l / "camera.json").read_text())["encoding"] == "linear"
    raw_s = cv2.imread(str(d_s / "frame_01.png"), cv2.IMREAD_UNCHANGED)
    raw_l = cv2.imread(str(d_l / "frame_01.png"), cv2.IMREAD_UNCHANGED)
    assert raw_s.dtype == np.uint8 and raw_l.dtype == np.uint16
    mid = (raw_s > 60) & (raw_s < 120)                       # sRGB 0.24–0.47 is linear 0.05–0.19
    assert (raw_l[mid] / 65535.0 < raw_s[mid] / 255.0 - 0.1).all()
    s, lin = load_sample(d_s), load_sample(d_l)
    assert lin.camera.encoding == "linear"
    assert float((s.frames - lin.frames).abs().max()) < 2e-3
    assert synth(tmp_path / "lin", "--num", 1, "--size", 32, 40, "--seed", 3) == 2   # other settings: refused


def test_a_dataset_rendered_in_another_light_is_refused(tmp_path, monkeypatch, capsys):
    """Resuming a synth folder after PHYSICS_LIGHT changed would mix frames blurred in two lights:
    the settings record the light (absent = "encoded", every dataset written before the switch to
    linear light) and the run is refused."""
    import focalstack.render.light as light
    assert light.PHYSICS_LIGHT == "linear"                    # the default (FOCALSTACK_PHYSICS_LIGHT unset)
    monkeypatch.setattr(light, "PHYSICS_LIGHT", "encoded")
    assert synth(tmp_path / "ds", "--num", 1, "--size", 24, 24) == 0
    assert "physics_light" not in json.loads((tmp_path / "ds" / "synth.json").read_text())
    monkeypatch.setattr(light, "PHYSICS_LIGHT", "linear")
    capsys.readouterr()
    assert synth(tmp_path / "ds", "--num", 2, "--size", 24, 24) == 2
    assert "physics_light" in capsys.readouterr().err
    assert synth(tmp_path / "lin", "--num", 1, "--size", 24, 24) == 0
    assert json.loads((tmp_path / "lin" / "synth.json").read_text())["physics_light"] == "linear"
