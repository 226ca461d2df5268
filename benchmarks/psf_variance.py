"""How much blur each discretised PSF really makes at a nominal σ (px): the per-axis variance of its
impulse response against σ².

    .venv/bin/python benchmarks/psf_variance.py [--sigmas 0.1 0.2 ...] [--out benchmarks/results/general/image_formation]

A PSF of per-axis standard deviation σ convolved with an image adds σ² px² of variance per axis. On a
pixel grid that holds only approximately: the renderer's Gaussian samples exp(−u²/2σ²) at integer
offsets, which below σ ≈ 0.5 px puts almost all weight on the centre tap (it blurs less than σ²),
and its anti-aliased disk (``psf="disk"``: radius 2σ, each tap weighted by its coverage) blurs
nothing below σ = 0.25 px and more than σ² above it. Depth from defocus reads depth from these
blur differences; where the data's discretisation and a method's differ (a real lens is neither),
small-blur cameras read another depth (README, "Image formation").

Each row renders a unit impulse at the centre of a 41×41 image with a uniform σ through
``focalstack.render.defocus`` (the fused backend, as ``synth``, training and ``optimize`` use it) and
through the cost volume's separable taps (``classical.dfd``), and ``psf="gaussian_matched"`` (the
Gaussian at the width whose grid blur has variance σ², :func:`focalstack.render.psf.matched_gaussian_sigma`), and writes the per-axis variance of the
result and the σ it implies (√variance). Writes psf_variance.{md,json}.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import focalstack  # noqa: F401  (first: sets torch's OpenMP wait policy, see focalstack/__init__)
import torch

ROOT = Path(__file__).resolve().parents[1]


def impulse_variance(image: torch.Tensor) -> float:
    """Per-axis variance (px²) of a [H,W] response to a centred unit impulse (mean of the two axes)."""
    h, w = image.shape
    y = torch.arange(h, dtype=image.dtype) - h // 2
    x = torch.arange(w, dtype=image.dtype) - w // 2
    m = image / image.sum()
    return float(0.5 * ((m.sum(1) * y * y).sum() + (m.sum(0) * x * x).sum()))


def renderer_variance(sigma_px: float, psf: str) -> float:
    from focalstack.render import defocus
    img = torch.zeros(1, 1, 41, 41, dtype=torch.float64)
    img[0, 0, 20, 20] = 1.0
    out = defocus(img, torch.full((1, 1, 41, 41), sigma_px, dtype=torch.float64), psf=psf)
    return impulse_variance(out[0, 0])


def cost_volume_variance(sigma_px: float) -> float:
    from focalstack.classical.dfd import _gaussian_taps
    taps = _gaussian_taps(torch.tensor([sigma_px], dtype=torch.float64), 15)[0]
    x = torch.arange(-15, 16, dtype=torch.float64)
    return float((taps * x * x).sum())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sigmas", type=float, nargs="+", default=[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.5, 2.0, 3.0])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "general" / "image_formation")
    a = ap.parse_args(argv)
    rows = []
    for s in a.sigmas:
        r = {"sigma_px": s, "gaussian_renderer": renderer_variance(s, "gaussian"),
             "disk_renderer": renderer_variance(s, "disk"), "gaussian_matched_renderer": renderer_variance(s, "gaussian_matched"),
             "cost_volume_taps": cost_volume_variance(s)}
        rows.append(r)
        print({k: round(v, 4) for k, v in r.items()}, flush=True)
    md = ["Per-axis blur a discretised PSF makes at nominal σ: the σ implied by its impulse response's variance "
          "(√var, px; the nominal σ would give σ itself) — `benchmarks/psf_variance.py`", "",
          "| nominal σ (px) | Gaussian, renderer | disk, renderer | `gaussian_matched`, renderer | Gaussian, cost-volume taps |",
          "|---:|---:|---:|---:|---:|"]
    md += [f"| {r['sigma_px']:g} | {math.sqrt(r['gaussian_renderer']):.3f} | {math.sqrt(r['disk_renderer']):.3f} | "
           f"{math.sqrt(r['gaussian_matched_renderer']):.3f} | {math.sqrt(r['cost_volume_taps']):.3f} |" for r in rows]
    from bench_common import write_results
    write_results(a.out, "psf_variance", md, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
