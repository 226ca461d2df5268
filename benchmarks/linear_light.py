"""Which light does real defocus add up in? Linear vs encoded blur on real DSLR aperture pairs (issue 13).

    .venv/bin/python benchmarks/linear_light.py [--fit 8] [--eval 24] [--factor 0.5] [--out benchmarks/results]

The DSLR-indoor set holds, per scene, an f/2.8 and an f/8 photo from one position with the focus
unchanged, and Xtion depth. Under the Gaussian thin-lens model the f/2.8 photo is the f/8 photo
blurred by the relative σ = sqrt(σ_2.8² − σ_8²) of each pixel's true depth — a test of the renderer's
physics on real photos with no depth estimation in the way. For each light
(``focalstack.render.light``: "encoded" blurs the sRGB values, "linear" decodes, blurs, encodes):

1. fit the camera's psf_scale and focus distance by grid search on ``--fit`` scenes (L1 between the
   re-rendered and the real f/2.8 photo, the same grid as ``classical.py``'s section C);
2. with each light's own fit, re-render ``--eval`` other scenes and report the L1, the PSNR, and the
   L1 within 3 px of the brightest 2 % of pixels (highlights, where the two lights differ most);
   "no blur" = the f/8 photo itself.

Writes <out>/linear_light.{md,json}. ~2 min on 2 cores. Skipped with a note when the data is absent.
"""

from __future__ import annotations

import argparse
import platform
import sys
from dataclasses import replace
from pathlib import Path

import focalstack  # noqa: F401  (first: torch's OpenMP wait policy)
import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(Path(__file__).resolve().parent))

GRID_SCALE = (0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.5, 0.7, 1.0)
GRID_FOCUS_M = (1.2, 1.7, 2.5)
LIGHTS = ("encoded", "linear")


def rerender(frames: torch.Tensor, depth: torch.Tensor, cam) -> torch.Tensor:
    """The f/2.8 photo predicted from the f/8 one ([2,3,H,W], f/2.8 first) and depth [H,W] (m)."""
    from focalstack.render import defocus, from_linear, to_linear
    d = depth.clamp(0.3, 10).view(1, 1, *depth.shape)
    sg = cam.sigma_px(d)[0, :, 0]                                       # [2,H,W]
    rel = (sg[0] ** 2 - sg[1] ** 2).clamp_min(0).sqrt().view(1, 1, *depth.shape)
    k = max(3, min(31, 2 * int(3 * float(rel.max())) + 1))
    return from_linear(defocus(to_linear(frames[1:2]), rel, kernel_size=k))[0]


def highlight_band(img: torch.Tensor) -> torch.Tensor:
    """[H,W] bool: pixels within 3 px of the brightest 2 % of the f/8 photo (grey)."""
    grey = img.mean(0)
    hot = (grey >= torch.quantile(grey.flatten(), 0.98)).float()[None, None]
    return F.max_pool2d(hot, 7, 1, 3)[0, 0] > 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fit", type=int, default=8)
    ap.add_argument("--eval", type=int, default=24)
    ap.add_argument("--factor", type=float, default=0.5)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    if not (DATA / "dfd_indoor_carvalho2018").is_dir():
        print("skipped: ../shared/data/dfd_indoor_carvalho2018 is absent")
        return 0
    import focalstack.render.light as light
    from classical import _load_pair
    from focalstack.data.rgbd import dslr_pairs
    from focalstack.optics import get_preset

    pairs = dslr_pairs(DATA / "dfd_indoor_carvalho2018")
    fit = [_load_pair(p, args.factor) for p in pairs[:args.fit]]
    ev = [_load_pair(p, args.factor) for p in pairs[args.fit:args.fit + args.eval]]
    base = get_preset("dslr_indoor").resized(args.factor)
    res: dict = {"fit_scenes": len(fit), "eval_scenes": len(ev), "factor": args.factor, "lights": {}}
    saved = light.PHYSICS_LIGHT
    try:
        for lt in LIGHTS:
            light.PHYSICS_LIGHT = lt
            grid = {}
            for ps in GRID_SCALE:
                for fd in GRID_FOCUS_M:
                    cam = replace(base, lens=replace(base.lens, psf_scale=ps), focus_distances_m=(fd, fd))
                    grid[(ps, fd)] = float(np.mean([float((rerender(f, d, cam) - f[0]).abs().mean()) for f, d in fit]))
            ps, fd = min(grid, key=grid.get)
            cam = replace(base, lens=replace(base.lens, psf_scale=ps), focus_distances_m=(fd, fd))
            l1, psnr, hl = [], [], []
            for f, d in ev:
                r = rerender(f, d, cam)
                e = (r - f[0]).abs()
                l1.append(float(e.mean()))
                psnr.append(float(10 * torch.log10(1.0 / ((r - f[0]) ** 2).mean().clamp_min(1e-12))))
                hl.append(float(e.mean(0)[highlight_band(f[1])].mean()))
            res["lights"][lt] = {"psf_scale": ps, "focus_m": fd, "fit_l1": grid[(ps, fd)], "eval_l1": float(np.mean(l1)),
                                 "eval_psnr_db": float(np.mean(psnr)), "eval_l1_highlights": float(np.mean(hl)),
                                 "per_scene_l1": l1}
            print(f"{lt:8s} fit psf_scale {ps:g} focus {fd:g} m: L1 fit {grid[(ps, fd)]:.5f} | eval L1 "
                  f"{np.mean(l1):.5f} PSNR {np.mean(psnr):.2f} dB, highlights L1 {np.mean(hl):.5f}", flush=True)
    finally:
        light.PHYSICS_LIGHT = saved
    nob = [float((f[1] - f[0]).abs().mean()) for f, _ in ev]
    res["no_blur_eval_l1"] = float(np.mean(nob))
    lin, enc = res["lights"]["linear"]["per_scene_l1"], res["lights"]["encoded"]["per_scene_l1"]
    res["linear_better_scenes"] = int(sum(a < b for a, b in zip(lin, enc)))
    h, w = ev[0][0].shape[-2:]
    md = [f"Real DSLR aperture pairs (f/8 → f/2.8 re-rendered through the Xtion depth), {w}×{h}, camera fitted on "
          f"{len(fit)} scenes per light, evaluated on {len(ev)} others; torch {torch.__version__}, {platform.processor() or platform.machine()}, 2 threads.", "",
          "| light | fitted psf_scale, focus | L1 (fit) | L1 (eval) | PSNR (eval) | L1 near highlights (eval) |",
          "|---|---|---:|---:|---:|---:|"]
    for lt in LIGHTS:
        r = res["lights"][lt]
        md.append(f"| {lt} | {r['psf_scale']:g}, {r['focus_m']:g} m | {r['fit_l1']:.5f} | {r['eval_l1']:.5f} | "
                  f"{r['eval_psnr_db']:.2f} dB | {r['eval_l1_highlights']:.5f} |")
    md += [f"| no blur (the f/8 photo) | | | {res['no_blur_eval_l1']:.5f} | | |", "",
           f"Linear light re-renders {res['linear_better_scenes']} of {len(ev)} evaluation scenes with the lower L1."]
    from bench_common import write_results
    write_results(args.out, "linear_light", md, res, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
