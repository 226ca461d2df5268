"""Depth bias by true depth: where a network's depth is too near or too far (issue 12's phone gap).

    .venv/bin/python benchmarks/depth_bias.py --camera phone --checkpoint shipped:general [--checkpoint RUN ...]

On the first ``--num`` validation stacks of one ``benchmarks/general.py`` camera (the DSLR-indoor
validation scenes rendered through it; built there on first use), prints per stack the median of
log(d̂ / d) over the pixels whose true depth d falls in each bin of ``--bins`` (metres; holes
excluded): 0 = unbiased, −0.3 = 26 % too near, +0.3 = 35 % too far; then, over those stacks
together, each bin's share of the pixels and δ1 there (which depths a score is won or lost at).
Ground truth is used for this diagnosis only.
"""

from __future__ import annotations

import argparse
import math
from types import SimpleNamespace

import torch

import general


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--camera", default="phone", choices=sorted(general.CAMERAS))
    ap.add_argument("--checkpoint", action="append", default=[], help="run folder, .safetensors or shipped:NAME")
    ap.add_argument("--num", type=int, default=4)
    ap.add_argument("--bins", type=float, nargs="+", default=[0.0, 1.0, 2.0, 3.0, 10.0])
    args = ap.parse_args()
    torch.set_num_threads(2)
    from focalstack.data import list_samples, load_sample
    from focalstack.inference import get_method
    net = get_method("net")
    samples = [load_sample(p) for p in list_samples(general.build(args.camera))[: args.num]]
    edges = list(zip(args.bins[:-1], args.bins[1:]))
    print(f"{args.camera}: median log(d̂/d) per true-depth bin " + ", ".join(f"{a:g}–{b:g} m" for a, b in edges))
    for ck in args.checkpoint or ["shipped:general"]:
        rows, count, good = [], torch.zeros(len(edges)), torch.zeros(len(edges))
        for s in samples:
            d = net(s, SimpleNamespace(checkpoint=ck, device="cpu")).depth_m.view(*s.size_hw)
            gt = s.depth_m.view(*s.size_hw)
            ok = torch.isfinite(gt) & (gt > 0)
            r, g = (d[ok] / gt[ok]).log(), gt[ok]
            bins = [(g >= a) & (g < b) for a, b in edges]
            rows.append([float(r[m].median()) if m.any() else float("nan") for m in bins])
            inside = r.abs() < math.log(1.25)      # δ1: max(d̂/d, d/d̂) < 1.25
            for i, m in enumerate(bins):
                count[i] += m.sum()
                good[i] += (m & inside).sum()
        print(ck, " | ".join(" ".join(f"{x:+.2f}" for x in row) for row in rows), flush=True)
        print("  share / δ1: " + ", ".join(f"{a:g}–{b:g} m {count[i] / count.sum():.2f} / "
                                          + (f"{good[i] / count[i]:.2f}" if count[i] else "–")
                                          for i, (a, b) in enumerate(edges)), flush=True)


if __name__ == "__main__":
    main()
