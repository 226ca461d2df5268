"""``focalstack import-dataset``: each benchmark reader on a tiny file written here in the dataset's
exact on-disk layout (h5py for MATLAB v7.3 / DDFF .h5, OpenEXR, hand-written PFM), one-line errors
for wrong files, and import → ``predict --method dff`` → ``eval`` end to end."""

import json
import math
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
import torch

from focalstack.cli import main
from focalstack.data import list_samples, load_sample, read_image

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---- helpers -----------------------------------------------------------------------------------------
def _texture(h, w, seed=0):
    rng = np.random.default_rng(seed)
    t = np.zeros((h, w, 3), np.float32)
    for s in (2, 4, 8):
        n = rng.random((h // s + 2, w // s + 2, 3)).astype(np.float32)
        t += cv2.resize(n, (w + 2 * s, h + 2 * s), interpolation=cv2.INTER_CUBIC)[s:s + h, s:s + w] / 3
    return np.clip(t, 0, 1)


def _u8(a):
    return np.round(np.clip(a, 0, 1) * 255).astype(np.uint8)


def cli(*argv):
    argv = [str(a) for a in argv]
    if argv[0] == "import-dataset" and "--quiet" not in argv:
        argv.append("--quiet")   # no progress bar: an error is then the only line on stderr
    return main(argv)


def _err(capsys, rc):
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert "\n" not in err, err
    return err


def predict_and_eval(dataset, tmp_path, *eval_args):
    """import → predict --method dff → eval; returns metrics.json's mean."""
    pred = tmp_path / f"pred_{Path(dataset).name}_{len(eval_args)}"
    assert cli("predict", dataset, "--method", "dff", "-o", pred) == 0
    assert cli("eval", pred, dataset, *eval_args) == 0
    mean = json.loads((pred / "metrics.json").read_text())["mean"]
    assert mean and all(math.isfinite(v) for v in mean.values()), mean
    return mean


# ---- NYUv2 -------------------------------------------------------------------------------------------
def write_nyu_mat(path, images, depths, keys=("images", "depths")):
    """MATLAB v7.3 layout: H×W×3×N and H×W×N stored column-major, so h5py sees the axes reversed."""
    with h5py.File(path, "w", userblock_size=512) as f:
        if "images" in keys:
            f["images"] = np.ascontiguousarray(images.transpose(0, 3, 2, 1))   # N×H×W×3 → N×3×W×H
        if "depths" in keys:
            f["depths"] = np.ascontiguousarray(depths.transpose(0, 2, 1))      # N×H×W → N×W×H
    with open(path, "r+b") as f:
        f.write(b"MATLAB 7.3 MAT-file, written by focalstack's test".ljust(116, b" "))


@pytest.fixture(scope="module")
def nyu(tmp_path_factory):
    d = tmp_path_factory.mktemp("nyu")
    h, w = 48, 64
    images = np.stack([_u8(_texture(h, w, seed=i)) for i in range(3)])
    yy, xx = np.mgrid[0:h, 0:w]
    depths = np.stack([(1.0 + 0.05 * xx + 0.02 * yy + i).astype(np.float32) for i in range(3)])
    write_nyu_mat(d / "nyu_depth_v2_labeled.mat", images, depths)
    from scipy.io import savemat
    savemat(d / "splits.mat", {"trainNdxs": np.array([[1], [3]], float), "testNdxs": np.array([[2]], float)})
    return d, images, depths


def test_nyuv2_reads_matlab_layout_and_official_split(nyu, tmp_path, capsys):
    from focalstack.data.benchmarks.nyuv2 import read_image_depth
    d, images, depths = nyu
    img, dep = read_image_depth(d / "nyu_depth_v2_labeled.mat", 1)
    assert img.shape == (48, 64, 3) and img.dtype == np.uint8 and np.array_equal(img, images[1])
    assert np.array_equal(dep, depths[1])

    out = tmp_path / "nyu"
    assert cli("import-dataset", "nyuv2", d / "nyu_depth_v2_labeled.mat", "-o", out, "--splits", d / "splits.mat",
               "--quiet") == 0
    assert [p.name for p in list_samples(out / "train")] == ["nyuv2_0001", "nyuv2_0003"]
    assert [p.name for p in list_samples(out / "test")] == ["nyuv2_0002"]
    s = load_sample(out / "test" / "nyuv2_0002")
    assert s.frames.shape == (5, 3, 24, 32)                      # the dered recipe: half size
    assert s.camera.focus_distances_m == (1.0, 1.5, 2.5, 4.0, 6.0) and s.camera.lens.f_number == 8.0
    assert math.isclose(s.camera.lens.pixel_size_m, 12e-6 * 320 / 32)
    assert np.array_equal(s.depth_m.numpy(), depths[1][::2, ::2])   # the file's metres, nearest, not clipped
    area = cv2.resize(images[1].astype(np.float32) / 255, (32, 24), interpolation=cv2.INTER_AREA)
    assert np.abs(s.aif.permute(1, 2, 0).numpy() - area).max() <= 1 / 255 + 1e-6
    prov = json.loads((out / "test" / "nyuv2_0002" / "import.json").read_text())
    assert prov["index_1based"] == 2 and prov["recipe"] == "dered"
    mean = predict_and_eval(out / "test", tmp_path)
    assert "delta1" in mean and "abs_rel" in mean

    # resumed: nothing re-rendered; other settings refused in one line
    capsys.readouterr()
    assert cli("import-dataset", "nyuv2", d / "nyu_depth_v2_labeled.mat", "-o", out, "--splits", d / "splits.mat",
               "--quiet") == 0
    assert "wrote 0, skipped 3" in capsys.readouterr().out
    rc = cli("import-dataset", "nyuv2", d / "nyu_depth_v2_labeled.mat", "-o", out, "--splits", d / "splits.mat",
             "--recipe", "dered_even", "--quiet")
    assert "different settings" in _err(capsys, rc)


def test_nyuv2_every_image_with_a_preset_recipe(nyu, tmp_path):
    d, images, depths = nyu
    out = tmp_path / "all"
    assert cli("import-dataset", "nyuv2", d / "nyu_depth_v2_labeled.mat", "-o", out, "--recipe", "native",
               "--limit", 2, "--quiet") == 0
    dirs = list_samples(out)
    assert [p.name for p in dirs] == ["nyuv2_0001", "nyuv2_0002"]
    s = load_sample(dirs[0])
    assert s.frames.shape == (5, 3, 48, 64) and np.array_equal(s.depth_m.numpy(), depths[0])


def test_nyuv2_wrong_files_fail_in_one_line(nyu, tmp_path, capsys):
    d, images, depths = nyu
    bad = tmp_path / "notes.mat"
    bad.write_text("not HDF5")
    assert "not an HDF5 file" in _err(capsys, cli("import-dataset", "nyuv2", bad, "-o", tmp_path / "o1"))
    nodepth = tmp_path / "nodepth.mat"
    write_nyu_mat(nodepth, images, depths, keys=("images",))
    assert "no 'depths' dataset" in _err(capsys, cli("import-dataset", "nyuv2", nodepth, "-o", tmp_path / "o2"))
    flat = tmp_path / "flat.mat"
    with h5py.File(flat, "w") as f:
        f["images"] = images[:, :, :, 0]
        f["depths"] = depths
    assert "'images' has shape" in _err(capsys, cli("import-dataset", "nyuv2", flat, "-o", tmp_path / "o3"))
    from scipy.io import savemat
    savemat(tmp_path / "s.mat", {"trainNdxs": np.array([[0], [1]], float), "testNdxs": np.array([[2]], float)})
    err = _err(capsys, cli("import-dataset", "nyuv2", d / "nyu_depth_v2_labeled.mat", "-o", tmp_path / "o4",
                           "--splits", tmp_path / "s.mat"))
    assert "1-based" in err
    assert "does not apply to nyuv2" in _err(capsys, cli("import-dataset", "nyuv2", d / "nyu_depth_v2_labeled.mat",
                                                         "-o", tmp_path / "o5", "--frames", 3))
    # never into a folder focalstack did not write
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("x")
    err = _err(capsys, cli("import-dataset", "nyuv2", d / "nyu_depth_v2_labeled.mat", "-o", mine))
    assert "focalstack did not write" in err and (mine / "notes.txt").is_file()


# ---- DDFF-12 -----------------------------------------------------------------------------------------
def write_ddff(path, splits=("train", "val"), n=(2, 1), hw=(20, 28), disp_4d=False, with_disp=True):
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        for sp, k in zip(splits, n):
            f[f"stack_{sp}"] = np.stack([np.stack([_u8(_texture(*hw, seed=10 * i + j)) for j in range(10)])
                                         for i in range(k)])
            if with_disp:
                disp = rng.uniform(0.03, 0.27, size=(k, *hw)).astype(np.float32)
                disp[:, 0, 0] = 0.0   # no ground truth there
                f[f"disp_{sp}"] = disp.reshape(k, 1, *hw) if disp_4d else disp


def test_ddff12_reads_every_split_disparity_and_scores_both_ways(tmp_path):
    from focalstack.data.benchmarks import ddff12
    path = tmp_path / "ddff-dataset-trainval.h5"
    write_ddff(path, disp_4d=True)   # the N×1×H×W variant
    out = tmp_path / "ddff"
    assert cli("import-dataset", "ddff12", path, "-o", out, "--quiet") == 0
    assert [p.name for p in list_samples(out / "train")] == ["train_0000", "train_0001"]
    assert [p.name for p in list_samples(out / "val")] == ["val_0000"]
    sd = out / "val" / "val_0000"
    s = load_sample(sd)
    assert s.frames.shape == (10, 3, 20, 28)
    with h5py.File(path) as f:
        assert np.allclose(s.frames[3].permute(1, 2, 0).numpy(), f["stack_val"][0, 3] / 255.0, atol=1e-6)
        gt = f["disp_val"][0].reshape(20, 28)
    disp = np.load(sd / "disparity.npy")
    assert np.isnan(disp[0, 0]) and np.allclose(disp[1:], gt[1:])
    assert s.depth_m[0, 0] == 0 and np.allclose(s.depth_m.numpy()[1:], ddff12.BF_PX_M / gt[1:], rtol=1e-6)
    cam = s.camera
    assert math.isclose(cam.focus_distances_m[0], 0.5) and math.isclose(cam.focus_distances_m[-1], 7.0)
    # the thin lens reproduces the shift-and-add blur of 9 views: CoC = 8·|δ − δ_k| px, σ = 0.3227·CoC
    d = torch.tensor([0.6, 1.3, 5.0], dtype=torch.float64).view(1, 1, 1, 3)
    coc = cam.coc_px(d)[0, :, 0, 0]
    delta = ddff12.BF_PX_M / d.view(-1)
    want = 8 * (delta.view(1, -1) - torch.tensor(ddff12.FOCUS_DISPARITIES_PX).view(-1, 1)).abs()
    assert torch.allclose(coc, want, rtol=1e-9)
    assert math.isclose(cam.lens.psf_scale, math.sqrt(10 / 96))
    conv = json.loads((sd / "import.json").read_text())["disparity"]
    assert math.isclose(conv["px_per_inverse_m"], ddff12.BF_PX_M) and conv["offset_px"] == 0
    # focalstack's own sample folders (disparity.npy included) are replaced on --overwrite
    assert cli("import-dataset", "ddff12", path, "-o", out, "--overwrite") == 0
    assert np.array_equal(np.load(sd / "disparity.npy"), disp, equal_nan=True)

    mean = predict_and_eval(out / "val", tmp_path, "--target", "disparity")
    assert {"mse", "rmse", "badpix", "bumpiness", "abs_rel", "delta1"} <= set(mean)
    mean = predict_and_eval(out / "val", tmp_path)
    assert "abs_rel" in mean and "badpix" not in mean


def test_ddff12_test_split_without_disparity_and_wrong_files(tmp_path, capsys):
    path = tmp_path / "ddff-dataset-test.h5"
    write_ddff(path, splits=("test",), n=(1,), with_disp=False)
    out = tmp_path / "t"
    assert cli("import-dataset", "ddff12", path, "-o", out, "--quiet") == 0
    sd = out / "test" / "test_0000"
    assert not (sd / "depth.npy").exists() and not (sd / "disparity.npy").exists()
    # eval on a set without disparity: one line
    pred = tmp_path / "p"
    assert cli("predict", out / "test", "--method", "dff", "-o", pred) == 0
    capsys.readouterr()
    assert "no disparity.npy" in _err(capsys, cli("eval", pred, out / "test", "--target", "disparity"))

    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["images"] = np.zeros((1, 4, 4, 3), np.uint8)
    assert "no stack_<split> dataset" in _err(capsys, cli("import-dataset", "ddff12", other, "-o", tmp_path / "o1"))
    mism = tmp_path / "mism.h5"
    write_ddff(mism, splits=("train",), n=(1,))
    with h5py.File(mism, "a") as f:
        del f["disp_train"]
        f["disp_train"] = np.zeros((1, 19, 28), np.float32)
    assert "'disp_train' has shape" in _err(capsys, cli("import-dataset", "ddff12", mism, "-o", tmp_path / "o2"))
    txt = tmp_path / "x.h5"
    txt.write_text("hello")
    assert "not an HDF5 file" in _err(capsys, cli("import-dataset", "ddff12", txt, "-o", tmp_path / "o3"))


# ---- FoD500 ------------------------------------------------------------------------------------------
def write_exr(path, depth):
    import OpenEXR
    d = depth.astype(np.float16)
    hdr = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    with OpenEXR.File(hdr, {"R": d, "G": d, "B": d}) as f:
        f.write(str(path))


def write_fod(folder, indices, hw=(32, 32), frames=5):
    from PIL import Image
    folder.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:hw[0], 0:hw[1]]
    for i in indices:
        for k in range(frames):
            Image.fromarray(_u8(_texture(*hw, seed=100 * i + k))).save(folder / f"{i:06d}_{k:02d}All.tif")
        depth = 0.1 + 0.04 * xx + 0.01 * yy + 0.01 * (i % 7)
        depth[0, :3] = np.inf   # background beyond half-float range: invalid
        write_exr(folder / f"{i:06d}Dpt.exr", depth)


def test_fod500_split_by_index_exr_depth_and_end_to_end(tmp_path):
    fs6 = tmp_path / "fs_6"
    write_fod(fs6, [0, 1, 400])
    out = tmp_path / "fod"
    assert cli("import-dataset", "fod500", fs6, "-o", out, "--quiet") == 0
    assert [p.name for p in list_samples(out / "train")] == ["fod500_000000", "fod500_000001"]
    assert [p.name for p in list_samples(out / "test")] == ["fod500_000400"]
    s = load_sample(out / "test" / "fod500_000400")
    assert s.camera.focus_distances_m == (0.1, 0.15, 0.3, 0.7, 1.5)
    assert math.isclose(s.camera.lens.pixel_size_m, 3.1e-3 / 256 * 8)   # 32 px wide: the preset resized
    assert np.allclose(s.frames[2].permute(1, 2, 0).numpy(), read_image(fs6 / "000400_02All.tif").permute(1, 2, 0).numpy())
    yy, xx = np.mgrid[0:32, 0:32]
    want = (0.1 + 0.04 * xx + 0.01 * yy + 0.01 * (400 % 7)).astype(np.float16).astype(np.float32)
    assert np.array_equal(s.depth_m.numpy()[1:], want[1:]) and (s.depth_m.numpy()[0, :3] == 0).all()
    mean = predict_and_eval(out / "test", tmp_path, "--min-depth", 0.1, "--max-depth", 1.5)
    assert "delta1" in mean


def test_fod500_wrong_files(tmp_path, capsys):
    fs6 = tmp_path / "fs_6"
    write_fod(fs6, [0], frames=4)
    assert "has frames [0, 1, 2, 3]" in _err(capsys, cli("import-dataset", "fod500", fs6, "-o", tmp_path / "o1"))
    write_fod(tmp_path / "b", [0])
    (tmp_path / "b" / "000000Dpt.exr").write_text("broken")
    assert "not a readable EXR" in _err(capsys, cli("import-dataset", "fod500", tmp_path / "b", "-o", tmp_path / "o2"))
    (tmp_path / "empty").mkdir()
    assert "NNNNNN_KKAll.tif" in _err(capsys, cli("import-dataset", "fod500", tmp_path / "empty", "-o", tmp_path / "o3"))


# ---- Mobile Depth ------------------------------------------------------------------------------------
def write_mobile(root, focus, aperture=40.0, focal=0.16, hw=(40, 56), scene="largemotion", calib="GTLarge"):
    from PIL import Image
    sd = root / "Aligned" / "Figure6" / scene
    sd.mkdir(parents=True)
    for i in range(len(focus)):
        Image.fromarray(_u8(_texture(*hw, seed=i))).save(sd / f"a{i:02d}.jpg", quality=95)
    cd = root / "calibration" / calib
    cd.mkdir(parents=True)
    (cd / "calibrated.txt").write_text("".join(f"{f} {aperture}\n" for f in focus) + f"{focal}\n")
    dd = root / "depth" / calib
    dd.mkdir(parents=True)
    yy, xx = np.mgrid[0:hw[0], 0:hw[1]]
    np.savetxt(dd / "depth.csv", 20.0 + 0.5 * xx + 0.1 * yy, delimiter=",")
    return sd


def test_mobiledepth_calibrated_txt_reused_import_and_end_to_end(tmp_path):
    from focalstack.data.benchmarks.mobiledepth import DEFAULT_UNIT_SCALE
    root = tmp_path / "mobile"
    focus = [60.0, 40.0, 25.0, 15.0]   # file order far → near: frames must come out near → far
    sd = write_mobile(root, focus)
    out = tmp_path / "m"
    assert cli("import-dataset", "mobiledepth", root, "-o", out, "--quiet") == 0
    s = load_sample(out / "largemotion")
    k = DEFAULT_UNIT_SCALE
    assert np.allclose(s.camera.focus_distances_m, sorted(x * k for x in focus))
    assert math.isclose(s.camera.lens.focal_length_m, 0.16 * k)
    assert torch.equal(s.frames[0], read_image(sd / "a03.jpg"))          # nearest focus first
    # the blur in pixels is calibrated.txt's: aperture · |d − d_f| / d · f / (d_f − f), in any unit
    d_units, fd_units = 30.0, 15.0
    coc = float(s.camera.coc_px(torch.tensor([[[[d_units * k]]]], dtype=torch.float64))[0, 0, 0, 0, 0])
    assert math.isclose(coc, 40.0 * abs(d_units - fd_units) / d_units * 0.16 / (fd_units - 0.16), rel_tol=1e-9)
    yy, xx = np.mgrid[0:40, 0:56]
    assert np.allclose(s.depth_m.numpy(), (20.0 + 0.5 * xx + 0.1 * yy) * k, rtol=1e-6)
    prov = json.loads((out / "largemotion" / "import.json").read_text())
    assert prov["source"] == str(sd.resolve()) and prov["frames"][0] == "a03.jpg"
    assert prov["calibration"].endswith("GTLarge/calibrated.txt")
    mean = predict_and_eval(out, tmp_path)
    assert "delta1" in mean
    # one scene folder given alone still finds the download's calibration/ and depth/
    assert cli("import-dataset", "mobiledepth", sd, "-o", tmp_path / "one") == 0
    assert load_sample(tmp_path / "one" / "largemotion").camera.focus_known


def test_mobiledepth_without_calibration_is_focalstack_import(tmp_path):
    from PIL import Image
    scene = tmp_path / "balls"
    scene.mkdir()
    for i in range(3):
        Image.fromarray(_u8(_texture(40, 56, seed=i))).save(scene / f"{i + 1:02d}.jpg", quality=95)
    out = tmp_path / "m"
    with pytest.warns(UserWarning, match="no calibrated.txt found"):
        assert cli("import-dataset", "mobiledepth", scene, "-o", out, "--quiet") == 0
    s = load_sample(out / "balls")
    assert not s.camera.focus_known and s.num_frames == 3
    assert json.loads((out / "balls" / "import.json").read_text())["calibration"] is None


def test_mobiledepth_wrong_calibration(tmp_path, capsys):
    root = tmp_path / "r"
    write_mobile(root, [30.0, 20.0, 10.0])
    calib = root / "calibration" / "GTLarge" / "calibrated.txt"
    calib.write_text("30 40\n20\n10 40\n0.16\n")
    assert "expected 'focus_distance aperture'" in _err(capsys, cli("import-dataset", "mobiledepth", root, "-o",
                                                                    tmp_path / "o1"))
    calib.write_text("30 40\n20 40\n0.16\n")
    assert "2 frame lines but" in _err(capsys, cli("import-dataset", "mobiledepth", root, "-o", tmp_path / "o2"))


# ---- HCI 4D ------------------------------------------------------------------------------------------
def write_pfm(path, arr, scale=-1.0):
    with open(path, "wb") as f:
        f.write(b"Pf\n" + f"{arr.shape[1]} {arr.shape[0]}\n{scale}\n".encode())
        f.write(np.flipud(arr).astype("<f4" if scale < 0 else ">f4").tobytes())


HCI_CFG = """[intrinsics]
focal_length_mm = 100
image_resolution_x_px = {w}
image_resolution_y_px = {h}
sensor_size_mm = 35
fstop = 100

[extrinsics]
num_cams_x = {n}
num_cams_y = {n}
baseline_mm = 90
focus_distance_m = 5
center_cam_x_m = 0
center_cam_y_m = 0
center_cam_z_m = 0
center_cam_rx_rad = 0
center_cam_ry_rad = 0
center_cam_rz_rad = 0

[meta]
disp_min = -0.6
disp_max = 0.9
frustum_disp_min = -2
frustum_disp_max = 2
depth_map_scale = 100
scene = tiny
category = training
"""


def write_hci_scene(scene, signs=(1, -1), n=5, hw=(32, 40)):
    """Views of a slanted textured plane: view (r,c) sees the centre pixel x at x − s·δ·(c − c0)."""
    from focalstack.data.benchmarks.hci4d import _sample
    from focalstack.data import write_image
    h, w = hw
    scene.mkdir(parents=True)
    (scene / "parameters.cfg").write_text(HCI_CFG.format(w=w, h=h, n=n))
    yy, xx = np.mgrid[0:h, 0:w]
    disp = (0.8 - 1.2 * xx / (w - 1)).astype(np.float32)          # +0.8 … −0.4 px, changes sign
    write_pfm(scene / "gt_disp_lowres.pfm", disp)
    tex = torch.from_numpy(_texture(h, w, seed=5)).permute(2, 0, 1)
    c0 = (n - 1) / 2
    d = torch.from_numpy(disp)
    for k in range(n * n):
        r, c = divmod(k, n)
        v = _sample(tex[None], (signs[0] * d * (c - c0))[None], (signs[1] * d * (r - c0))[None])[0]
        write_image(scene / f"input_Cam{k:03d}.png", v.clamp(0, 1))
    return disp


def test_pfm_reader(tmp_path, capsys):
    from focalstack.data.benchmarks.hci4d import read_pfm
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    write_pfm(tmp_path / "le.pfm", a, -1.0)
    write_pfm(tmp_path / "be.pfm", a, 2.0)
    assert np.array_equal(read_pfm(tmp_path / "le.pfm"), a)           # top row first
    assert np.array_equal(read_pfm(tmp_path / "be.pfm"), 2 * a)
    (tmp_path / "rgb.pfm").write_bytes(b"PF\n1 1\n-1\n" + b"\0" * 12)
    with pytest.raises(ValueError, match="colour PFM"):
        read_pfm(tmp_path / "rgb.pfm")
    (tmp_path / "bad.pfm").write_bytes(b"P6\n1 1\n255\n\0\0\0")
    with pytest.raises(ValueError, match="not a PFM file"):
        read_pfm(tmp_path / "bad.pfm")


def test_hci4d_refocus_signs_depth_and_disparity_end_to_end(tmp_path):
    from focalstack.data.benchmarks.hci4d import refocus
    root = tmp_path / "full_data"
    disp = write_hci_scene(root / "training" / "tiny")
    out = tmp_path / "hci"
    assert cli("import-dataset", "hci4d", root, "-o", out, "--disparities", 1.0, -0.6, "--frames", 5, "--quiet") == 0
    sd = out / "training" / "tiny"
    prov = json.loads((sd / "import.json").read_text())
    assert prov["parallax_signs"] == [1, -1]                 # found from the ground truth
    s = load_sample(sd)
    assert s.frames.shape == (5, 3, 32, 40) and s.aif is not None
    bf = 0.09 * 100 / 35 * 40
    assert np.allclose(s.depth_m.numpy(), 1.0 / (disp / bf + 1 / 5.0), rtol=1e-5)
    alphas = prov["refocus_disparities_px"]
    assert np.allclose(s.camera.focus_distances_m, [1.0 / (a / bf + 0.2) for a in alphas])
    assert list(s.camera.focus_distances_m) == sorted(s.camera.focus_distances_m)
    assert np.array_equal(np.load(sd / "disparity.npy"), disp)
    # each frame is sharpest (closest to the centre view) where the disparity equals its refocus disparity
    aif = s.aif
    for k, a in enumerate(alphas):
        cols = np.abs(disp[0] - a) < 0.1
        if cols.sum() < 2:
            continue
        err = [float((s.frames[j][:, 4:-4, cols] - aif[:, 4:-4, cols]).abs().mean()) for j in range(len(alphas))]
        assert int(np.argmin(err)) == k, (k, err)
    # the wrong vertical sign would not focus
    views = torch.stack([torch.stack([read_image(root / "training" / "tiny" / f"input_Cam{r * 5 + c:03d}.png")
                                      for c in range(5)]) for r in range(5)])
    good = refocus(views, [0.2], (1, -1))[0]
    bad = refocus(views, [0.2], (1, 1))[0]
    cols = np.abs(disp[0] - 0.2) < 0.1
    assert (good[:, 4:-4, cols] - aif[:, 4:-4, cols]).abs().mean() < (bad[:, 4:-4, cols] - aif[:, 4:-4, cols]).abs().mean()

    mean = predict_and_eval(out / "training", tmp_path, "--target", "disparity")
    assert {"mse", "badpix", "bumpiness"} <= set(mean) and "abs_rel" not in mean   # disparities change sign


def test_hci4d_wrong_files(tmp_path, capsys):
    scene = tmp_path / "s" / "tiny"
    write_hci_scene(scene, n=3, hw=(16, 20))
    cfg = (scene / "parameters.cfg").read_text()
    (scene / "parameters.cfg").write_text(cfg.replace("baseline_mm = 90\n", ""))
    assert "[extrinsics] baseline_mm missing" in _err(capsys, cli("import-dataset", "hci4d", scene, "-o",
                                                                  tmp_path / "o1"))
    (scene / "parameters.cfg").write_text(cfg)
    (scene / "input_Cam004.png").unlink()
    assert "input_Cam004.png: view missing" in _err(capsys, cli("import-dataset", "hci4d", scene, "-o",
                                                                tmp_path / "o2"))
    (tmp_path / "none").mkdir()
    assert "no scene folders" in _err(capsys, cli("import-dataset", "hci4d", tmp_path / "none", "-o", tmp_path / "o3"))
