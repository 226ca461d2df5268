"""Photo import: EXIF, sidecar focus, ordering, alignment, one-line errors."""

import csv
import json
import math

import numpy as np
import pytest
from PIL import Image, TiffImagePlugin

from focalstack.cli import main
from focalstack.data import load_sample
from focalstack.data.align import align_frames, estimate_warp, warp_image
from focalstack.data.importer import import_photos
from focalstack.data.photo_meta import read_exif


def _texture(h, w, seed=0):
    rng = np.random.default_rng(seed)
    import cv2
    t = np.zeros((h, w, 3), np.float32)
    for s in (2, 4, 8, 16):
        n = rng.random((h // s + 1, w // s + 1, 3)).astype(np.float32)
        t += cv2.resize(n, (w, h), interpolation=cv2.INTER_CUBIC) / 4
    return np.clip(t, 0, 1)


def _save(path, arr, exif=None):
    img = Image.fromarray(np.round(np.clip(arr, 0, 1) * 255).astype(np.uint8))
    if exif is not None:
        img.save(path, exif=exif, quality=95)
    else:
        img.save(path)


def _exif(focal_mm=4.3, fnum=1.9, subject_m=None, fp_res=None):
    ex = Image.Exif()
    ifd = ex.get_ifd(0x8769)
    ifd[0x920A] = TiffImagePlugin.IFDRational(int(focal_mm * 10), 10)      # FocalLength
    ifd[0x829D] = TiffImagePlugin.IFDRational(int(fnum * 10), 10)          # FNumber
    if subject_m is not None:
        ifd[0x9206] = TiffImagePlugin.IFDRational(int(subject_m * 100), 100)  # SubjectDistance
    if fp_res is not None:
        ifd[0xA20E] = TiffImagePlugin.IFDRational(int(fp_res), 1)          # FocalPlaneXResolution
        ifd[0xA210] = 3                                                    # unit: cm
    return ex


def test_read_exif_from_pillow_jpeg(tmp_path):
    p = tmp_path / "a.jpg"
    _save(p, _texture(40, 60), _exif(4.3, 1.9, subject_m=0.75, fp_res=10000))   # 10000 px/cm → 1 µm
    m = read_exif(p, (60, 40))
    assert math.isclose(m.focal_length_m, 4.3e-3, rel_tol=1e-6)
    assert math.isclose(m.f_number, 1.9, rel_tol=1e-6)
    assert math.isclose(m.focus_distance_m, 0.75, rel_tol=1e-6)
    assert math.isclose(m.pixel_size_m, 1e-6, rel_tol=1e-6)


def _similarity(scale, angle_deg, tx, ty, cx, cy):
    a = math.radians(angle_deg)
    c, s = scale * math.cos(a), scale * math.sin(a)
    # about the centre (cx, cy), then shift
    return np.array([[c, -s, cx - c * cx + s * cy + tx], [s, c, cy - s * cx - c * cy + ty], [0, 0, 1]])


def test_alignment_recovers_known_similarity():
    h, w = 120, 160
    big = _texture(h + 40, w + 40, seed=1)                      # no black borders after warping
    shift = np.array([[1, 0, 20], [0, 1, 20], [0, 0, 1]], float)
    ref = big[20:20 + h, 20:20 + w]
    m_true = _similarity(1.03, 1.0, 3.0, -2.0, w / 2, h / 2)   # reference → frame coordinates
    src = warp_image(big, shift @ np.linalg.inv(m_true), (w, h))   # frame(M x) = ref(x)
    g = lambda im: im.mean(2).astype(np.float32)               # noqa: E731
    m = estimate_warp(g(src), g(ref), "affine")
    corners = np.array([[20, 20, 1], [w - 20, 20, 1], [20, h - 20, 1], [w - 20, h - 20, 1]], float).T
    err = np.abs((m @ corners)[:2] - (m_true @ corners)[:2]).max()
    assert err < 0.3, err
    # align_frames: middle frame is the reference; aligned frames match it after cropping
    res = align_frames([src, ref, src], motion="affine")
    assert res.reference == 1
    y0, y1, x0, x1 = res.crop
    assert (y1 - y0) < h and (x1 - x0) < w
    diff = np.abs(res.aligned[0] - ref[y0:y1, x0:x1])[3:-3, 3:-3].mean()
    raw = np.abs(src - ref)[y0:y1, x0:x1].mean()
    assert diff < 0.2 * raw, (diff, raw)
    assert res.scales[0] == pytest.approx(1.03, abs=0.003)


def _write_stack(folder, n=4, h=48, w=64, seed=0, exif=True):
    folder.mkdir(parents=True, exist_ok=True)
    base = _texture(h, w, seed)
    names = []
    for i in range(n):
        arr = base * 0.5 + 0.1 * i                               # frame i is recognisable by its mean
        name = f"img_{i + 1}.jpg"
        _save(folder / name, arr, _exif(4.3, 1.9, fp_res=10000) if exif else None)
        names.append(name)
    return names


def test_import_orders_by_focus_near_to_far(tmp_path):
    photos = tmp_path / "photos"
    names = _write_stack(photos)
    focus = {names[0]: 2.0, names[1]: 0.5, names[2]: 1.0, names[3]: 4.0}
    with open(photos / "focus.csv", "w", newline="") as fh:
        wr = csv.writer(fh)
        wr.writerow(["file", "focus_m"])
        for k, v in focus.items():
            wr.writerow([k, v])
    rep = import_photos(photos, tmp_path / "s", motion="none")
    s = load_sample(tmp_path / "s")
    assert list(s.camera.focus_distances_m) == [0.5, 1.0, 2.0, 4.0]
    assert rep.order == [names[1], names[2], names[0], names[3]]
    means = [float(f.mean()) for f in s.frames]
    assert np.argsort(means).tolist() == [2, 0, 1, 3]
    assert math.isclose(s.camera.lens.focal_length_m, 4.3e-3, rel_tol=1e-6)
    cam = json.loads((tmp_path / "s" / "camera.json").read_text())
    assert cam["focus_known"] is True


def test_import_max_size_scales_pixel(tmp_path):
    photos = tmp_path / "photos"
    _write_stack(photos, n=3, h=60, w=80)
    import_photos(photos, tmp_path / "s", focus=[0.5, 1, 2], max_size=40, motion="none")
    s = load_sample(tmp_path / "s")
    assert s.size_hw == (30, 40)
    assert math.isclose(s.camera.lens.pixel_size_m, 2e-6, rel_tol=1e-6)


def test_import_unknown_focus_writes_placeholders(tmp_path):
    photos = tmp_path / "photos"
    _write_stack(photos, n=3, exif=False)
    rep = import_photos(photos, tmp_path / "s", motion="none")
    assert not rep.focus_known
    cam = json.loads((tmp_path / "s" / "camera.json").read_text())
    assert cam["focus_known"] is False and cam["lens_known"] is False
    fd = cam["focus_distances_m"]
    assert fd == sorted(fd) and len(fd) == 3


def _cli_error(capsys, argv):
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1, err
    return err


def test_import_errors_are_one_line_and_name_the_file(tmp_path, capsys):
    photos = tmp_path / "p"
    names = _write_stack(photos, n=3)
    err = _cli_error(capsys, ["import", str(photos), "-o", str(tmp_path / "o"), "--focus", "0.5", "1"])
    assert "--focus gives 2" in err and "3 images" in err
    (photos / names[1]).write_bytes(b"this is not a jpeg")
    err = _cli_error(capsys, ["import", str(photos), "-o", str(tmp_path / "o")])
    assert names[1] in err and "not a readable image" in err
    single = tmp_path / "single"
    _write_stack(single, n=1)
    err = _cli_error(capsys, ["import", str(single), "-o", str(tmp_path / "o")])
    assert "img_1.jpg" in err and "at least 2" in err
    mixed = tmp_path / "mixed"
    _write_stack(mixed, n=2)
    _save(mixed / "img_3.jpg", _texture(30, 30))
    err = _cli_error(capsys, ["import", str(mixed), "-o", str(tmp_path / "o")])
    assert "img_3.jpg" in err and "differs" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    err = _cli_error(capsys, ["import", str(empty), "-o", str(tmp_path / "o")])
    assert "no images" in err
    # focus.csv that misses a file
    side = tmp_path / "side"
    names = _write_stack(side, n=2)
    (side / "focus.csv").write_text(f"{names[0]},0.5\n")
    err = _cli_error(capsys, ["import", str(side), "-o", str(tmp_path / "o")])
    assert "focus.csv" in err and names[1] in err
    assert not (tmp_path / "o").exists()


def test_import_mobile_depth_stack_aligns(shared_data, tmp_path, capsys):
    src = shared_data / "mobile_depth_subset" / "largemotion"
    rc = main(["import", str(src), "-o", str(tmp_path / "lm"), "--max-size", "160"])
    assert rc == 0
    s = load_sample(tmp_path / "lm")
    assert s.num_frames == 14
    assert max(s.size_hw) <= 160 and min(s.size_hw) > 60
    info = json.loads((tmp_path / "lm" / "import.json").read_text())
    assert info["focus_known"] is False and not info["ecc_failed"]
    # aligned: neighbouring frames agree much better than the raw ones do
    raw = [np.asarray(Image.open(src / n).convert("L").resize((160, 107)), np.float32) / 255 for n in info["frames"][:2]]
    raw_diff = np.abs(raw[0] - raw[1]).mean()
    al = s.frames.mean(1)
    al_diff = float((al[0] - al[1]).abs().mean())
    assert al_diff < raw_diff


# ---- camera RAW (DNG written by the test: tests/rawdng.py) ---------------------------------------

def _raw_stack(folder, levels=(0.1, 0.2, 0.4), hw=(48, 64), **kw):
    """Flat-grey DNG frames (linear light ``level`` in every channel before the as-shot illuminant)."""
    from .rawdng import write_dng
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i, lv in enumerate(levels):
        scene = np.full((*hw, 3), lv)
        scene[:, hw[1] // 2:] = lv / 2                                 # two patches: exposure halves
        names.append(f"IMG_{i:04d}.dng")
        write_dng(folder / names[-1], scene, **kw)
    return names


def test_import_raw_dng_is_linear_16_bit_with_camera_white_balance_and_exif(tmp_path):
    import cv2
    import torch

    from focalstack.data.encoding import linear_to_srgb
    photos = tmp_path / "raw"
    names = _raw_stack(photos)
    m = read_exif(photos / names[0], (64, 48))
    assert m.focal_length_m == pytest.approx(12e-3) and m.f_number == pytest.approx(2.0)
    assert m.pixel_size_m == pytest.approx(15e-6, rel=1e-4)
    rep = import_photos(photos, tmp_path / "s", focus=[0.6, 1.2, 3.0], motion="none")
    assert rep.lens_source == {"focal_length": "EXIF", "f_number": "EXIF", "pixel_size": "EXIF FocalPlaneXResolution"}
    cam = json.loads((tmp_path / "s" / "camera.json").read_text())
    assert cam["encoding"] == "linear" and cam["focal_length_m"] == pytest.approx(12e-3)
    info = json.loads((tmp_path / "s" / "import.json").read_text())
    assert info["encoding"] == "linear" and "use_camera_wb=True" in info["raw_decoding"]
    for k, lv in enumerate((0.1, 0.2, 0.4)):
        raw = cv2.imread(str(tmp_path / "s" / f"frame_{k:02d}.png"), cv2.IMREAD_UNCHANGED)
        assert raw.dtype == np.uint16 and raw.shape == (48, 64, 3)
        v = raw.astype(np.float64) / 65535
        # linear: the stored values are the scene's (1.0 = white level), the two patches differ by 2×,
        # and the camera's white balance made the grey grey (the sensor saw it as 0.5 : 1 : 0.8)
        left, right = v[4:-4, 4:28].reshape(-1, 3), v[4:-4, 36:-4].reshape(-1, 3)
        assert np.allclose(left, lv, atol=2e-3) and np.allclose(right, lv / 2, atol=2e-3), (k, left.mean(0))
    # the loader converts linear frames to the working encoding (sRGB) in one place
    s = load_sample(tmp_path / "s")
    assert s.camera.encoding == "linear"
    assert torch.allclose(s.frames[2, :, 4:-4, 4:28], linear_to_srgb(torch.tensor(0.4)), atol=3e-3)
    assert torch.allclose(s.frames[2, :, 4:-4, 36:-4], linear_to_srgb(torch.tensor(0.2)), atol=3e-3)


def test_import_raw_beside_jpegs_uses_the_raw_files_and_8_bit_photos_say_srgb(tmp_path):
    photos = tmp_path / "mixed"
    _raw_stack(photos, levels=(0.2, 0.3))
    _save(photos / "IMG_0000.jpg", _texture(48, 64))
    _save(photos / "IMG_0001.jpg", _texture(48, 64, 1))
    rep = import_photos(photos, tmp_path / "s", focus=[0.5, 1.0], motion="none")
    assert rep.order == ["IMG_0000.dng", "IMG_0001.dng"]
    assert any("2 non-RAW image(s) beside the RAW files ignored" in n for n in rep.notes)
    assert json.loads((tmp_path / "s" / "camera.json").read_text())["encoding"] == "linear"
    jpegs = tmp_path / "jpegs"
    _write_stack(jpegs, n=2)
    import_photos(jpegs, tmp_path / "j", focus=[0.5, 1.0], motion="none")
    assert json.loads((tmp_path / "j" / "camera.json").read_text())["encoding"] == "srgb"


def test_unreadable_raw_is_one_line_naming_the_file(tmp_path, capsys):
    photos = tmp_path / "raw"
    _raw_stack(photos, levels=(0.2, 0.3))
    (photos / "IMG_0001.dng").write_bytes(b"II*\0" + b"not a raw file" * 20)
    err = _cli_error(capsys, ["import", str(photos), "-o", str(tmp_path / "o"), "--focus", "0.5", "1"])
    assert "IMG_0001.dng: not a readable camera RAW file" in err
    assert not (tmp_path / "o").exists()


def test_raw_import_then_predict_writes_a_16_bit_linear_aif_and_a_point_cloud(tmp_path):
    """The whole path: RAW photos → linear sample → predict → aif.tif (16 bit, linear) + points.ply."""
    import cv2

    from focalstack.data.encoding import srgb_to_linear
    from focalstack.inference.pointcloud import read_ply

    from .conftest import tiny_sample
    from .rawdng import write_dng
    photos = tmp_path / "raw"
    photos.mkdir()
    s = tiny_sample(0, hw=(48, 64))                                      # a rendered 5-frame two-plane stack
    for i, f in enumerate(s.frames):
        write_dng(photos / f"IMG_{i}.dng", srgb_to_linear(f).permute(1, 2, 0).numpy())
    assert main(["import", str(photos), "-o", str(tmp_path / "s"), "--no-align",
                 "--focus", *[str(x) for x in s.camera.focus_distances_m]]) == 0
    assert main(["predict", str(tmp_path / "s"), "--method", "dff", "-o", str(tmp_path / "p"), "--export", "ply"]) == 0
    tif = cv2.imread(str(tmp_path / "p" / "aif.tif"), cv2.IMREAD_UNCHANGED)
    assert tif.dtype == np.uint16 and tif.shape == (48, 64, 3)
    xyz, _ = read_ply(tmp_path / "p" / "points.ply")
    assert xyz.shape == (48 * 64, 3)
    # the metric depth tells the two planes apart (0.7 m left, 2.5 m right)
    d = np.load(tmp_path / "p" / "depth.npy")
    assert np.median(d[8:-8, 6:26]) < np.median(d[8:-8, 38:-6])
