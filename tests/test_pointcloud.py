"""``predict --export ply``: back-projection geometry, the PLY file, and the CLI output rules."""

import json

import cv2
import numpy as np
import pytest
import torch

import focalstack.inference.pointcloud as PC
from focalstack.cli import main
from focalstack.data import save_sample
from focalstack.data.io import read_marker
from focalstack.inference.pointcloud import backproject, camera_intrinsics, read_ply, write_ply

from .conftest import tiny_sample

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_fronto_parallel_plane_reprojects_flat_with_the_field_of_view():
    h, w, f, z = 30, 40, 50.0, 2.5
    cx, cy = (w - 1) / 2, (h - 1) / 2
    pts = backproject(torch.full((h, w), z), f, cx, cy)
    assert pts.shape == (h * w, 3)
    assert np.all(pts[:, 2] == z)                                    # flat: every z is the depth
    # x/y span the field of view: the pixel-centre rays at ±(W−1)/2 px off-axis, times z / f
    assert pts[:, 0].min() == pytest.approx(-cx * z / f) and pts[:, 0].max() == pytest.approx(cx * z / f)
    assert pts[:, 1].min() == pytest.approx(-cy * z / f) and pts[:, 1].max() == pytest.approx(cy * z / f)
    half_fov = np.arctan(((w - 1) / 2) / f)                          # horizontal half-angle of the pixel centres
    assert np.arctan2(pts[:, 0].max(), z) == pytest.approx(half_fov)
    # row-major order, x right and y down: pixel (v=0, u=0) is top-left, (0, 1) one step right
    p = pts.reshape(h, w, 3)
    assert p[0, 1, 0] - p[0, 0, 0] == pytest.approx(z / f) and p[0, 0, 1] < 0 < p[-1, 0, 1]
    # the camera's intrinsics: focal length / pixel pitch, centre of the image
    cam = tiny_sample(0).camera
    fpx, ccx, ccy = camera_intrinsics(cam, (h, w))
    assert fpx == pytest.approx(cam.lens.focal_length_m / cam.lens.pixel_size_m) and (ccx, ccy) == (cx, cy)


def test_tilted_plane_stays_planar():
    h, w, f = 24, 32, 40.0
    cx, cy = (w - 1) / 2, (h - 1) / 2
    n = np.array([0.3, -0.2, 1.0])
    n /= np.linalg.norm(n)
    d0 = 1.7                                                         # plane n·P = d0
    v, u = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    rays = np.stack([(u - cx) / f, (v - cy) / f, np.ones_like(u, float)], -1)
    depth = d0 / (rays @ n)                                          # z where each pixel's ray meets the plane
    assert depth.min() > 0 and depth.max() / depth.min() > 1.3       # really tilted
    pts = backproject(depth, f, cx, cy)
    assert np.abs(pts @ n - d0).max() < 1e-12                         # every point on the plane
    c = pts - pts.mean(0)                                            # and a least-squares fit agrees
    _, s, vt = np.linalg.svd(c, full_matrices=False)
    assert s[2] / s[0] < 1e-12 and abs(abs(vt[2] @ n) - 1) < 1e-12


def test_backproject_rejects_bad_input():
    with pytest.raises(ValueError, match=r"\[H,W\]"):
        backproject(np.ones((2, 3, 4)), 10.0, 1, 1)
    with pytest.raises(ValueError, match="focal length"):
        backproject(np.ones((2, 3)), 0.0, 1, 1)


def test_written_ply_parses_back(tmp_path):
    rng = np.random.default_rng(0)
    xyz = rng.normal(size=(57, 3))
    rgb = rng.integers(0, 256, size=(57, 3), dtype=np.uint8)
    assert write_ply(tmp_path / "p.ply", xyz, rgb) == 57
    data = (tmp_path / "p.ply").read_bytes()
    head, _, body = data.partition(b"end_header\n")
    lines = head.decode("ascii").splitlines()
    assert lines[0] == "ply" and lines[1] == "format binary_little_endian 1.0"
    assert "element vertex 57" in lines
    assert [ln for ln in lines if ln.startswith("property")] == [
        "property float x", "property float y", "property float z",
        "property uchar red", "property uchar green", "property uchar blue"]
    assert len(body) == 57 * (3 * 4 + 3)
    first = np.frombuffer(body[:12], "<f4")                          # parsed by hand, not by read_ply
    assert np.allclose(first, xyz[0], atol=1e-6) and tuple(body[12:15]) == tuple(rgb[0])
    x2, c2 = read_ply(tmp_path / "p.ply")
    assert np.allclose(x2, xyz.astype(np.float32)) and np.array_equal(c2, rgb)
    # float colours in [0,1] are rounded; an empty cloud is a valid file
    write_ply(tmp_path / "f.ply", xyz[:2], np.array([[0.0, 0.5, 1.0], [1.0, 1.0, 1.0]]))
    assert read_ply(tmp_path / "f.ply")[1].tolist() == [[0, 128, 255], [255, 255, 255]]
    assert write_ply(tmp_path / "e.ply", np.zeros((0, 3)), np.zeros((0, 3), np.uint8)) == 0
    assert read_ply(tmp_path / "e.ply")[0].shape == (0, 3)
    (tmp_path / "t.ply").write_bytes(data[:-5])
    with pytest.raises(ValueError, match="t.ply"):
        read_ply(tmp_path / "t.ply")


def _one_line_error(capsys, *needles):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "error:" in err[0], err
    for s in needles:
        assert s in err[0], (s, err[0])
    return err[0]


def test_predict_export_ply_writes_points_from_depth_aif_and_camera(tmp_path):
    save_sample(tiny_sample(0), tmp_path / "s")
    out = tmp_path / "pred"
    assert main(["predict", str(tmp_path / "s"), "--method", "dff", "-o", str(out), "--export", "ply"]) == 0
    assert read_marker(out) == "prediction"
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]     # no temporaries left
    xyz, rgb = read_ply(out / "points.ply")
    depth = np.load(out / "depth.npy")
    h, w = depth.shape
    assert xyz.shape == (h * w, 3)                                                 # every pixel valid here
    assert np.allclose(xyz[:, 2], depth.ravel(), rtol=1e-6)
    cam = tiny_sample(0).camera
    fpx = cam.lens.focal_length_m / cam.lens.pixel_size_m
    assert np.allclose(xyz[:, 0], ((np.arange(h * w) % w) - (w - 1) / 2) * depth.ravel() / fpx, rtol=1e-5, atol=1e-7)
    aif = cv2.cvtColor(cv2.imread(str(out / "aif.png")), cv2.COLOR_BGR2RGB)
    assert np.array_equal(rgb, aif.reshape(-1, 3))                                # colours = the AIF
    meta = json.loads((out / "meta.json").read_text())
    assert meta["points_ply"]["points"] == h * w and meta["points_ply"]["focal_px"] == pytest.approx(fpx)
    # focalstack's own output (points.ply included) is replaced on a second run
    assert main(["predict", str(tmp_path / "s"), "--method", "dff", "-o", str(out), "--export", "ply"]) == 0
    assert (out / "points.ply").is_file()


def test_predict_export_ply_for_a_dataset_and_invalid_depth_left_out(tiny_dataset, tmp_path):
    out = tmp_path / "preds"
    assert main(["predict", str(tiny_dataset), "--method", "dff", "-o", str(out), "--export", "ply"]) == 0
    for name in ("s000", "s001", "s002"):
        assert read_ply(out / name / "points.ply")[0].shape == (24 * 28, 3)
    # pixels of non-finite or non-positive depth are not points
    d = torch.full((4, 5), 2.0)
    d[0, 0], d[1, 1], d[2, 2] = float("nan"), 0.0, float("inf")
    xyz, rgb = PC.prediction_points(d, torch.rand(3, 4, 5), tiny_sample(0).camera)
    assert xyz.shape == (17, 3) and rgb.shape == (17, 3) and np.all(xyz[:, 2] == 2.0)


def test_export_ply_is_refused_for_relative_depth_before_any_work(tmp_path, capsys):
    s = tiny_sample(0)
    save_sample(s, tmp_path / "u")
    cam = json.loads((tmp_path / "u" / "camera.json").read_text())
    cam["focus_known"] = False
    (tmp_path / "u" / "camera.json").write_text(json.dumps(cam))
    out = tmp_path / "o"
    assert main(["predict", str(tmp_path / "u"), "--method", "optimize", "-o", str(out), "--export", "ply"]) == 2
    _one_line_error(capsys, "u: --export ply needs metric depth", "relative inverse depth")
    assert not out.exists()
    # a dataset holding such a sample is refused before the first sample is predicted
    save_sample(s, tmp_path / "ds" / "a")
    (tmp_path / "ds" / "b").mkdir(parents=True)
    for f in (tmp_path / "u").iterdir():
        if not f.name.startswith("."):
            (tmp_path / "ds" / "b" / f.name).write_bytes(f.read_bytes())
    assert main(["predict", str(tmp_path / "ds"), "--method", "dff", "-o", str(tmp_path / "p"), "--export", "ply"]) == 2
    _one_line_error(capsys, "b: --export ply needs metric depth")
    assert not (tmp_path / "p").exists()
    # placeholder lens values: no focal length to project with
    cam["focus_known"], cam["lens_known"] = True, False
    (tmp_path / "u" / "camera.json").write_text(json.dumps(cam))
    assert main(["predict", str(tmp_path / "u"), "--method", "dff", "-o", str(out), "--export", "ply"]) == 2
    _one_line_error(capsys, "lens_known: false")


def test_export_ply_output_is_atomic_and_never_over_foreign_files(tmp_path, capsys, monkeypatch):
    save_sample(tiny_sample(0), tmp_path / "s")
    out = tmp_path / "pred"
    out.mkdir()
    (out / "points.ply").write_bytes(b"my own scan\n")              # a user's file, no focalstack marker
    assert main(["predict", str(tmp_path / "s"), "--method", "dff", "-o", str(out), "--export", "ply"]) == 2
    _one_line_error(capsys, str(out), "did not write")
    assert (out / "points.ply").read_bytes() == b"my own scan\n" and len(list(out.iterdir())) == 1
    # a failure while writing the cloud leaves the earlier prediction intact and no temporaries
    out2 = tmp_path / "pred2"
    assert main(["predict", str(tmp_path / "s"), "--method", "dff", "-o", str(out2)]) == 0
    before = {p.name: p.read_bytes() for p in out2.iterdir()}

    def broken(path, xyz, rgb):
        path.write_bytes(b"ply\npartial")
        raise OSError("disk full")

    monkeypatch.setattr(PC, "write_ply", broken)
    with pytest.raises(OSError, match="disk full"):
        main(["predict", str(tmp_path / "s"), "--method", "dff", "-o", str(out2), "--export", "ply"])
    assert {p.name: p.read_bytes() for p in out2.iterdir()} == before
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
