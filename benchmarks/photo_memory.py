"""Photo-sized focal stacks (issue 13): peak RSS and wall time of each step of the user pipeline on a
24 MP (6000×4000) JPEG focal stack, per method, and the depth accuracy of each.

    .venv/bin/python benchmarks/photo_memory.py [--size 6000x4000] [--work-size 1500x1000] [--frames 5 30]
        [--methods dff dfd optimize net net+refine] [--timeout-min 30] [--out benchmarks/results]
        [--work bench_work/photo_memory]

Per frame count F (everything under ``--work``/<size>_from<work size>_<scene>_F<F>/, resumable: a step
whose output exists is skipped and its recorded measurement reused):

0. ``make stack`` (set-up, not a pipeline step, but measured the same way to show it stays bounded):
   a scene with ground truth at the working size — by default the first validation scene of the
   DSLR-indoor RGB-D set (``../shared/data/dfd_indoor_carvalho2018``, the 80/20 split by scene of
   ``synth --split 0.2 --seed 0`` that benchmarks/general.py and the shipped model's pretraining use,
   so no network saw it), centre-cropped to the working aspect and resized (colour cubic, depth
   nearest); ``--scene procedural[:SEED]`` (or a missing shared folder) uses
   ``focalstack.data.procedural.generate_scene`` at the working size instead. Camera: the DSLR set's
   35 mm f/2.8 on a 23.22 mm wide (APS-C) sensor (645 px × 36 µm), so the pixel pitch is
   23.22 mm / width (3.87 µm at 6000 px, as a 24 MP APS-C body). F frames focused uniformly in inverse
   depth between the 2nd and 98th percentiles of the scene's depth. Each frame is rendered alone at
   the working size (``focalstack.data.synthesis.synthesize_stack``, plain gather model, Gaussian PSF,
   one render window for all frames), upscaled ×s to ``--size`` (cv2 INTER_CUBIC; the camera at the
   working size has s× the pixel pitch, so the blur in pixels grows by s), then gets Gaussian sensor
   noise (std 0.01) at full size and is written as an 8-bit JPEG, quality 95 — one frame in memory at
   a time. Ground-truth depth: the working-size depth upscaled (nearest) to ``--size``, ``gt_depth.npy``;
   camera numbers in ``stack.json``.
1. ``import``: ``focalstack import photos -o sample --focus ... --focal-length-mm ... --f-number ...
   --pixel-size-um ... --no-align`` (the frames are aligned by construction; without alignment the
   importer neither warps nor crops), then ``gt_depth.npy`` is copied into the sample as ``depth.npy``
   (after checking the sample has the same size).
2. ``predict M``: ``focalstack predict sample --method M -o pred_M`` for M in dff, dfd, optimize, net
   (the shipped general model); ``net+refine``: ``--method net --refine STEPS`` (``--refine-steps``, 100).
3. ``eval M``: ``focalstack eval pred_M sample --out eval_M``; δ1 and AbsRel from its metrics.json
   (metric depth, no alignment).

Every step is its own process, started through a small Python wrapper (``WRAPPER``) that runs it and
reads ``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss``: the peak resident set of that step alone
(of its largest process, not the sum over processes). A failed step (nonzero exit, killed by the OOM
killer: exit -9, or past ``--timeout-min``: the process group is killed) is recorded with its exit
code and the last line of its stderr, and the steps that need its output are marked skipped; failed
steps are not retried on the next run unless ``--retry-failed``. Logs: ``logs/<step>.{out,err,json}``.

Writes <out>/photo_memory.md and photo_memory.json. Runtime at 24 MP: long (hours; the 30-frame
stack needs ~9 GB for its float frames alone).
"""

from __future__ import annotations

import focalstack  # noqa: F401  (first: sets torch's OpenMP wait policy, see focalstack/__init__)

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import bench_common   # benchmarks/ (the script's folder is on sys.path)
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
WORK = ROOT / "bench_work" / "photo_memory"
FS = [sys.executable, "-m", "focalstack"]

METHODS = ("dff", "dfd", "optimize", "net", "net+refine")
FOCAL_LENGTH_MM = 35.0
F_NUMBER = 2.8
SENSOR_WIDTH_MM = 645 * 36e-3        # the DSLR-indoor camera: 36 µm pixels at 645 px wide
NOISE_STD = 0.01
JPEG_QUALITY = 95

# Runs one command (argv[3:]) and writes {rc, timed_out, wall_s, maxrss_kb, ...} to argv[1]; stdout and
# stderr of the command go to argv[1] with .out / .err instead of .json. A fresh wrapper per step, so
# RUSAGE_CHILDREN holds that step's peak alone. The command runs in its own session: on a timeout (or
# when the wrapper is interrupted) its whole process group is killed.
WRAPPER = r"""
import json, os, resource, signal, subprocess, sys, time
rec_path, timeout, cmd = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
stem = rec_path[:-len(".json")]
signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))
with open(stem + ".out", "wb") as out, open(stem + ".err", "wb") as err:
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=out, stderr=err, start_new_session=True)
    timed_out = False
    try:
        rc = p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        os.killpg(p.pid, signal.SIGKILL)
        rc = p.wait()
    except BaseException:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
        raise
    wall = time.perf_counter() - t0
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
rec = {"rc": rc, "timed_out": timed_out, "wall_s": wall, "maxrss_kb": ru.ru_maxrss, "user_s": ru.ru_utime,
       "sys_s": ru.ru_stime, "cmd": cmd}
with open(rec_path + ".tmp", "w") as f:
    json.dump(rec, f, indent=1)
os.replace(rec_path + ".tmp", rec_path)
"""


# ---- helpers ------------------------------------------------------------------------------------

def wh(s: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in s.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WxH, e.g. 6000x4000, got {s!r}") from None
    if w < 16 or h < 16:
        raise argparse.ArgumentTypeError(f"size must be at least 16x16, got {s}")
    return w, h


def last_line(path: Path) -> str:
    """The last non-empty line of a log (progress bars: the text after the last carriage return)."""
    try:
        data = path.read_bytes()[-20000:].decode("utf-8", "replace")
    except OSError:
        return ""
    lines = [ln.strip() for ln in data.replace("\r", "\n").split("\n") if ln.strip()]
    return lines[-1][:300] if lines else ""


class Runner:
    """Runs the steps of one stack through the wrapper; resumable (see module doc)."""

    def __init__(self, d: Path, timeout_s: float, retry_failed: bool):
        self.d, self.timeout_s, self.retry_failed = d, timeout_s, retry_failed
        (d / "logs").mkdir(parents=True, exist_ok=True)

    def step(self, name: str, cmd: list[str], done, outputs: list[Path], after=None) -> dict:
        """Run ``cmd`` unless ``done()`` (its output exists) or it failed before (kept unless retry_failed).
        ``after()`` (in this process, not measured) completes a successful step; it may raise to fail it."""
        rec_path = self.d / "logs" / f"{name}.json"
        old = json.loads(rec_path.read_text()) if rec_path.is_file() else None
        if done() and old is not None and old.get("status") == "ok":
            print(f"  {name}: done before ({old['wall_s']:.1f} s, {old['maxrss_kb'] / 2**20:.2f} GB)", flush=True)
            return old | {"resumed": True}
        if old is not None and old.get("status") != "ok" and not self.retry_failed:
            print(f"  {name}: failed before ({old['status']}; --retry-failed reruns it)", flush=True)
            return old | {"resumed": True}
        for p in outputs:   # leftovers of an earlier, unfinished attempt (all under the work folder)
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
        print(f"+ {name}: {' '.join(cmd)}", flush=True)
        rec_path.unlink(missing_ok=True)
        try:
            subprocess.run([sys.executable, "-c", WRAPPER, str(rec_path), str(self.timeout_s), *cmd], check=True)
            rec = json.loads(rec_path.read_text())
        except (subprocess.CalledProcessError, OSError, ValueError) as e:
            rec = {"rc": None, "timed_out": False, "wall_s": float("nan"), "maxrss_kb": 0, "cmd": cmd,
                   "wrapper_error": str(e)}
        err = rec_path.with_suffix(".err")
        if rec.get("timed_out"):
            rec["status"] = f"timeout ({self.timeout_s / 60:g} min)"
        elif rec["rc"] == 0:
            rec["status"] = "ok"
            if after is not None:
                try:
                    after()
                except Exception as e:   # noqa: BLE001  (recorded, the run goes on)
                    rec["status"] = "failed after the step"
                    rec["last_stderr"] = f"{type(e).__name__}: {e}"
        else:
            rc = rec["rc"]
            rec["status"] = (f"killed (signal {-rc}{', out of memory?' if rc == -9 else ''})" if rc is not None and rc < 0
                             else f"exit {rc}")
        if rec["status"] != "ok" and "last_stderr" not in rec:
            rec["last_stderr"] = last_line(err) or rec.get("wrapper_error", "")
        rec_path.write_text(json.dumps(rec, indent=1) + "\n")
        gb = rec["maxrss_kb"] / 2**20
        print(f"  {name}: {rec['status']}, {rec['wall_s']:.1f} s, peak RSS {gb:.2f} GB"
              + (f" — {rec['last_stderr']}" if rec["status"] != "ok" else ""), flush=True)
        return rec


def skipped(why: str) -> dict:
    return {"status": f"skipped ({why})", "rc": None, "wall_s": None, "maxrss_kb": None}


# ---- the stack (run in its own process: --_make-stack) -------------------------------------------

def load_scene(scene: str, work_wh: tuple[int, int]):
    """(name, aif [3,h,w] float32 numpy in [0,1], depth [h,w] float32 metres, 0 = invalid) at the working size."""
    import cv2
    w, h = work_wh
    kind, _, arg = scene.partition(":")
    if kind == "dslr" and (SHARED / "dfd_indoor_carvalho2018").is_dir():
        from focalstack.data.rgbd import dslr_indoor_source
        from focalstack.data.synth_dataset import split_of
        src = dslr_indoor_source(SHARED / "dfd_indoor_carvalho2018")
        if arg:
            idx = int(arg)
        else:   # the first validation scene of synth --split 0.2 --seed 0 (general.py, pretraining)
            idx = split_of(len(src), 0.2, 0).index("val")
        name, aif, depth = src.load(idx)
        aif, depth = aif.numpy(), depth.numpy()
        h0, w0 = depth.shape
        if w0 / h0 > w / h:   # centre crop to the working aspect
            cw = round(h0 * w / h)
            x0 = (w0 - cw) // 2
            aif, depth = aif[:, :, x0:x0 + cw], depth[:, x0:x0 + cw]
        else:
            ch = round(w0 * h / w)
            y0 = (h0 - ch) // 2
            aif, depth = aif[:, y0:y0 + ch], depth[y0:y0 + ch]
        img = cv2.resize(np.ascontiguousarray(aif.transpose(1, 2, 0)), (w, h), interpolation=cv2.INTER_CUBIC)
        aif = np.clip(img, 0, 1).transpose(2, 0, 1)
        depth = cv2.resize(np.ascontiguousarray(depth), (w, h), interpolation=cv2.INTER_NEAREST)
        return f"dslr_indoor:{idx}:{name}", np.ascontiguousarray(aif, dtype=np.float32), depth.astype(np.float32)
    from focalstack.data.procedural import generate_scene
    seed = int(arg) if kind == "procedural" and arg else 0
    aif, depth = generate_scene(seed, (h, w), depth_range_m=(1.0, 4.0))
    name = f"procedural:{seed}" + ("" if kind == "procedural" else " (DSLR-indoor data absent)")
    return name, aif.numpy(), depth.numpy()


def make_stack(d: Path, frames: int, size: tuple[int, int], work: tuple[int, int], scene: str) -> None:
    """d/photos/frame_NNN.jpg (near → far), d/gt_depth.npy, d/stack.json (written last); bounded memory."""
    import cv2
    import torch

    from focalstack.data.synthesis import auto_kernel_size, synthesize_stack
    from focalstack.optics.camera import FocalStackCamera
    from focalstack.optics.thin_lens import ThinLens

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    (W, H), (w, h) = size, work
    name, aif, depth = load_scene(scene, work)
    valid = depth[np.isfinite(depth) & (depth > 0)]
    near, far = (float(v) for v in np.percentile(valid, [2, 98]))
    focus = [1.0 / (1.0 / near + (1.0 / far - 1.0 / near) * k / max(1, frames - 1)) for k in range(frames)]
    px_full = SENSOR_WIDTH_MM * 1e-3 / W
    px_work = SENSOR_WIDTH_MM * 1e-3 / w
    cam = FocalStackCamera(ThinLens(FOCAL_LENGTH_MM * 1e-3, F_NUMBER, px_work), tuple(focus))
    aif_t, depth_t = torch.from_numpy(aif), torch.from_numpy(depth)
    filled = depth_t.clone()
    filled[~(torch.isfinite(filled) & (filled > 0))] = float(np.median(valid))   # only for the window size
    k = max(auto_kernel_size(cam.subset([i]).sigma_px(filled.view(1, 1, h, w))) for i in range(frames))
    photos = d / "photos"
    if photos.exists():
        shutil.rmtree(photos)
    photos.mkdir(parents=True)
    files = []
    for i in range(frames):
        fr = synthesize_stack(aif_t, depth_t, cam.subset([i]), kernel_size=k, source=name)[0]
        img = cv2.resize(np.ascontiguousarray(fr.numpy().transpose(1, 2, 0)), (W, H), interpolation=cv2.INTER_CUBIC)
        del fr
        rng = np.random.default_rng([7, frames, i])
        img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(NOISE_STD)
        np.clip(img, 0, 1, out=img)
        img *= 255.0
        u8 = np.rint(img).astype(np.uint8)
        del img
        f = f"frame_{i:03d}.jpg"
        if not cv2.imwrite(str(photos / f), cv2.cvtColor(u8, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]):
            raise SystemExit(f"{photos / f}: could not write")
        files.append(f)
        print(f"frame {i + 1}/{frames}: focus {focus[i]:.3f} m", flush=True)
        del u8
    gt = cv2.resize(depth, (W, H), interpolation=cv2.INTER_NEAREST).astype(np.float32)
    np.save(d / "gt_depth.npy", gt)
    del gt
    sig = cam.sigma_px(filled.view(1, 1, h, w))
    info = {"scene": name, "size_wh": [W, H], "work_size_wh": [w, h], "upscale": W / w,
            "focal_length_mm": FOCAL_LENGTH_MM, "f_number": F_NUMBER, "sensor_width_mm": SENSOR_WIDTH_MM,
            "pixel_size_um": px_full * 1e6, "work_pixel_size_um": px_work * 1e6, "focus_m": focus,
            "scene_depth_p2_p98_m": [near, far], "render_window_px_at_work_size": k,
            "sigma_px_at_full_size_median_p99_max": [float(sig.median()) * W / w,
                                                     float(torch.quantile(sig.flatten()[::7], 0.99)) * W / w,
                                                     float(sig.max()) * W / w],
            "noise_std": NOISE_STD, "jpeg_quality": JPEG_QUALITY, "files": files}
    (d / "stack.json").write_text(json.dumps(info, indent=1) + "\n")


# ---- one stack's pipeline ------------------------------------------------------------------------

def run_stack(frames: int, args, timeout_s: float) -> tuple[dict, dict | None]:
    (W, H), (w, h) = args.size, args.work_size
    d = args.work / f"{W}x{H}_from{w}x{h}_{args.scene.replace(':', '-')}_F{frames}"
    d.mkdir(parents=True, exist_ok=True)
    r = Runner(d, timeout_s, args.retry_failed)
    steps: dict[str, dict] = {}
    steps["make stack"] = r.step(
        "make_stack", [sys.executable, str(Path(__file__).resolve()), "--_make-stack", str(d), "--_frames", str(frames),
                       "--size", f"{W}x{H}", "--work-size", f"{w}x{h}", "--scene", args.scene],
        done=lambda: (d / "stack.json").is_file(), outputs=[d / "stack.json", d / "gt_depth.npy", d / "photos"])
    if steps["make stack"]["status"] != "ok":
        return steps, None
    info = json.loads((d / "stack.json").read_text())
    sample = d / "sample"

    def copy_gt():   # the importer must not have cropped or resized (header only: no decode)
        from PIL import Image
        with Image.open(sorted(sample.glob("frame_*"))[0]) as im:
            got = im.size
        if got != (W, H):
            raise RuntimeError(f"imported frames are {got[0]}x{got[1]}, expected {W}x{H} (cropped or resized): "
                               "ground truth not copied")
        shutil.copyfile(d / "gt_depth.npy", sample / "depth.npy")

    steps["import"] = r.step(
        "import", FS + ["import", str(d / "photos"), "-o", str(sample), "--focus", *[f"{x:.6f}" for x in info["focus_m"]],
                        "--focal-length-mm", f"{info['focal_length_mm']:g}", "--f-number", f"{info['f_number']:g}",
                        "--pixel-size-um", f"{info['pixel_size_um']:.6f}", "--no-align"],
        done=lambda: (sample / "depth.npy").is_file(), outputs=[sample], after=copy_gt)
    # the same photos imported with alignment (ECC + common crop at full resolution): its memory and time;
    # the frames are aligned by construction, so the crop differs from the ground truth's frame by a few
    # pixels at most and this sample is not evaluated
    aligned = d / "sample_aligned"
    steps["import (aligned)"] = r.step(
        "import_aligned", FS + ["import", str(d / "photos"), "-o", str(aligned), "--focus",
                                *[f"{x:.6f}" for x in info["focus_m"]], "--focal-length-mm", f"{info['focal_length_mm']:g}",
                                "--f-number", f"{info['f_number']:g}", "--pixel-size-um", f"{info['pixel_size_um']:.6f}"],
        done=lambda: (aligned / "camera.json").is_file(), outputs=[aligned])
    for m in args.methods:
        tag = f"net_refine{args.refine_steps}" if m == "net+refine" else m
        pred, ev = d / f"pred_{tag}", d / f"eval_{tag}"
        if steps["import"]["status"] != "ok":
            steps[f"predict {m}"], steps[f"eval {m}"] = skipped("import failed"), skipped("import failed")
            continue
        extra = ["--method", "net", "--refine", str(args.refine_steps)] if m == "net+refine" else ["--method", m]
        steps[f"predict {m}"] = r.step(f"predict_{tag}", FS + ["predict", str(sample), *extra, "-o", str(pred)],
                                       done=lambda p=pred: any(p.rglob("depth.npy")) if p.is_dir() else False,
                                       outputs=[pred, ev])
        if steps[f"predict {m}"]["status"] != "ok":
            steps[f"eval {m}"] = skipped("predict failed")
            continue
        rec = r.step(f"eval_{tag}", FS + ["eval", str(pred), str(sample), "--out", str(ev), "--name", m],
                     done=lambda e=ev: (e / "metrics.json").is_file(), outputs=[ev])
        if rec["status"] == "ok":
            mean = json.loads((ev / "metrics.json").read_text())["mean"]
            rec = rec | {"delta1": mean.get("delta1"), "abs_rel": mean.get("abs_rel"), "rmse": mean.get("rmse")}
        steps[f"eval {m}"] = rec
    return steps, info


# ---- report --------------------------------------------------------------------------------------

def _num(x, fmt: str) -> str:
    return "—" if x is None or (isinstance(x, float) and not np.isfinite(x)) else format(x, fmt)


def markdown(res: dict) -> str:
    m, s = res["machine"], res["settings"]
    mem = f", {m['mem_total_gb']:.0f} GB RAM" if m.get("mem_total_gb") else ""
    out = ["# Photo-sized focal stacks: peak RSS and wall time per step", "",
           f"Machine: {m['cpu']}, {m['cores']} cores{mem}; Python {m['python']}, "
           f"torch {m['torch']} ({m['torch_threads']} threads by default), OpenCV {m['opencv']}, "
           f"focalstack {m['focalstack']}.", "",
           f"Stacks: {s['size'][0]}×{s['size'][1]} JPEG (quality {JPEG_QUALITY}), rendered at "
           f"{s['work_size'][0]}×{s['work_size'][1]} and upscaled ×{s['size'][0] / s['work_size'][0]:g}; "
           f"scene `{s['scene']}`; per-step timeout {s['timeout_min']:g} min. Peak RSS = max resident set of the "
           "step's process (`getrusage(RUSAGE_CHILDREN).ru_maxrss` of a fresh wrapper per step). δ1 / AbsRel: "
           "`focalstack eval` (metric depth, no alignment) against the upscaled ground truth. `net` = the shipped "
           f"general model, `net+refine` = `--method net --refine {s['refine_steps']}`. `make stack` is the set-up (one "
           "frame in memory at a time), not a pipeline step.", ""]
    for frames, row in res["stacks"].items():
        info = row.get("stack")
        if info:
            sig = info["sigma_px_at_full_size_median_p99_max"]
            out.append(f"**{frames} frames**: {info['scene']}, {info['focal_length_mm']:g} mm f/{info['f_number']:g}, "
                       f"{info['pixel_size_um']:.3f} µm pixels, focus {info['focus_m'][0]:.2f} … "
                       f"{info['focus_m'][-1]:.2f} m (uniform in 1/d), blur σ at full size median / p99 / max "
                       f"{sig[0]:.1f} / {sig[1]:.1f} / {sig[2]:.1f} px.")
            out.append("")
    out += ["| frames | step | wall [s] | peak RSS [GB] | eval wall [s] | eval peak RSS [GB] | δ1 | AbsRel | status |",
            "|---:|---|---:|---:|---:|---:|---:|---:|---|"]
    for frames, row in res["stacks"].items():
        st = row["steps"]
        for name, rec in st.items():
            if name.startswith("eval "):
                continue
            ev = st.get("eval " + name[len("predict "):]) if name.startswith("predict ") else None
            status = rec["status"] + (f": {rec['last_stderr']}" if rec["status"] != "ok" and rec.get("last_stderr") else "")
            if ev is not None and ev["status"] != "ok" and not ev["status"].startswith("skipped (predict"):
                status += f"; eval {ev['status']}" + (f": {ev['last_stderr']}" if ev.get("last_stderr") else "")
            gb = None if rec.get("maxrss_kb") is None else rec["maxrss_kb"] / 2**20
            egb = None if ev is None or ev.get("maxrss_kb") is None else ev["maxrss_kb"] / 2**20
            status = status.replace("|", "\\|")
            out.append(f"| {frames} | {name} | {_num(rec.get('wall_s'), '.1f')} | {_num(gb, '.2f')} | "
                       f"{_num(ev and ev.get('wall_s'), '.1f')} | {_num(egb, '.2f')} | "
                       f"{_num(ev and ev.get('delta1'), '.3f')} | {_num(ev and ev.get('abs_rel'), '.3f')} | {status} |")
    out += ["", f"Total {res['total_s']:.0f} s this run (steps done before are reused, not rerun)."]
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=wh, default=(6000, 4000), help="photo size WxH (default 6000x4000, 24 MP)")
    ap.add_argument("--work-size", type=wh, default=(1500, 1000), help="size the scene is rendered at, WxH")
    ap.add_argument("--frames", type=int, nargs="+", default=[5, 30], help="frame counts (default 5 30)")
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    ap.add_argument("--refine-steps", type=int, default=100, help="net+refine: --refine STEPS (default 100)")
    ap.add_argument("--scene", default="dslr", help="dslr (first DSLR-indoor validation scene), dslr:INDEX, "
                                                    "procedural or procedural:SEED")
    ap.add_argument("--timeout-min", type=float, default=30, help="per step (default 30)")
    ap.add_argument("--retry-failed", action="store_true", help="rerun steps recorded as failed")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--work", type=Path, default=WORK, help="intermediate data (default bench_work/photo_memory)")
    ap.add_argument("--_make-stack", dest="make_stack", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--_frames", dest="make_frames", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.make_stack is not None:
        make_stack(args.make_stack, args.make_frames, args.size, args.work_size, args.scene)
        return 0
    if args.work_size[0] > args.size[0] or args.work_size[1] > args.size[1]:
        ap.error("--work-size must not exceed --size")
    if abs(args.size[0] / args.size[1] - args.work_size[0] / args.work_size[1]) > 0.01:
        ap.error("--work-size must have the aspect ratio of --size")
    args.work = args.work.resolve()
    t0 = time.perf_counter()
    res = {"machine": bench_common.machine(),
           "settings": {"size": list(args.size), "work_size": list(args.work_size), "frames": args.frames,
                        "methods": args.methods, "refine_steps": args.refine_steps, "scene": args.scene,
                        "timeout_min": args.timeout_min, "work": str(args.work)},
           "stacks": {}}
    for f in args.frames:
        print(f"== {f} frames", flush=True)
        steps, info = run_stack(f, args, args.timeout_min * 60)
        res["stacks"][str(f)] = {"stack": info, "steps": steps}
    res["total_s"] = time.perf_counter() - t0
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "photo_memory.json").write_text(json.dumps(res, indent=1, default=float) + "\n")
    md = markdown(res)
    (args.out / "photo_memory.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
