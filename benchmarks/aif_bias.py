"""Where the re-rendering objective puts depth, by the AIF it renders from (issue 12's phone gap).

    .venv/bin/python benchmarks/aif_bias.py --camera phone [--camera dslr35 ...]

For the first ``--num`` validation stacks of a ``benchmarks/general.py`` camera, the photometric
re-rendering loss (the training objective's main term, :func:`focalstack.losses.reconstruction_loss`)
of the true depth scaled by s, ``render_stack(aif, s·d_true)`` against the frames, for s from 0.6
to 1.4 — printed as % above its minimum over s — with the AIF taken from:

* ``gt``: the ground-truth AIF (sharp);
* ``hard``: per pixel the input frame of smallest σ at the true depth (:func:`focalstack.losses.coarse_aif`);
* ``hard@s``: the same pick at the scaled depth (as a hard pick at the predicted depth would be in training);
* ``mean``: the mean of the frames;
* ``net gain G``: the camera-aware network's AIF (``--checkpoint``) with its AIF selection prior's
  gain (``log_aif_gain``, per px of σ) set to G; the depth it predicts is not used, only its AIF.

A minimum at s < 1 means the objective prefers depths too near the focus planes with that AIF: a
blend of frames carries their blur, the renderer adds the frame's blur on top, so the loss is lower
with less predicted blur. Where the frames' σ differ by < 1 px (a phone), an AIF blended with a soft
selection (gain 1.5) moves the minimum to s ≈ 0.8–0.9, the sharp ones keep it at ≈ 1.0. Ground truth
is used for this diagnosis only. Writes nothing; ~20 s per camera.

``--bins E0 E1 …`` scales the depth of one true-depth bin [E_i, E_i+1) m at a time (the other pixels
keep their true depth) and sums the curves over the stacks, per bin with ≥ 5 % of a stack's pixels:
where in depth the objective can tell depths apart (a flat curve: it cannot) and which way its bias
points there. With ``--bins 0 2 3 10`` on the phone, every AIF's curve moves < 1 % over s = 0.6–1.4
on the 3–10 m pixels (beyond its farthest focus plane), with its minimum at s = 0.7 for the network's
blended AIF (the untrained initialisation's, at gain 1.5) and at 1.4 for ``hard@s``
(``results/general/aif_bias_bins.txt``).
"""

from __future__ import annotations

import argparse
import math
from types import SimpleNamespace

import torch

import general

SCALES = (0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.25, 1.4)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--camera", action="append", choices=sorted(general.CAMERAS))
    ap.add_argument("--checkpoint", default="shipped:general")
    ap.add_argument("--gains", type=float, nargs="+", default=[1.5, 5.0])
    ap.add_argument("--num", type=int, default=3)
    ap.add_argument("--bins", type=float, nargs="+", default=None,
                    help="true-depth bin edges (m): scale one bin at a time, curves summed over the stacks")
    args = ap.parse_args()
    torch.set_num_threads(2)
    from focalstack.data import list_samples, load_sample
    from focalstack.inference import get_method
    from focalstack.inference.network import load_cached
    from focalstack.losses import coarse_aif, reconstruction_loss
    from focalstack.optics.camera import CameraBatch

    net = get_method("net")
    model = load_cached(args.checkpoint, "cpu")[0]   # (model, sidecar)
    gain0 = float(model.log_aif_gain.detach().exp())
    print("re-rendering loss of s·d_true, % above its minimum over s; columns s = " + " ".join(f"{s:g}" for s in SCALES))
    bins = list(zip(args.bins[:-1], args.bins[1:])) if args.bins else [None]
    for cam_name in args.camera or ["phone"]:
        summed: dict = {}
        for path in list_samples(general.build(cam_name))[: args.num]:
            s = load_sample(path)
            gt = s.depth_m.clone()
            ok = torch.isfinite(gt) & (gt > 0)
            gt[~ok] = gt[ok].median()                      # holes: any depth, the same for every row
            d, frames, cam = gt[None, None], s.frames[None], CameraBatch.from_cameras([s.camera])
            aifs = {"gt": s.aif[None], "hard": coarse_aif(frames, d, cam)[0], "hard@s": None, "mean": frames.mean(1)}
            for g in args.gains:
                with torch.no_grad():
                    model.log_aif_gain.fill_(math.log(g))
                aifs[f"net gain {g:g}"] = net(s, SimpleNamespace(checkpoint=args.checkpoint, device="cpu")).aif[None]
            with torch.no_grad():
                model.log_aif_gain.fill_(math.log(gain0))
            for b in bins:
                inside = torch.ones_like(d, dtype=torch.bool) if b is None else (d >= b[0]) & (d < b[1])
                if float(inside.float().mean()) < 0.05:
                    continue
                for name, aif in aifs.items():
                    curve = []
                    for sc in SCALES:
                        ds = torch.where(inside, d * sc, d)
                        with torch.no_grad():
                            src = coarse_aif(frames, ds, cam)[0] if aif is None else aif
                            curve.append(float(reconstruction_loss(src, ds, frames, cam)[0]))
                    key = (name, b) if args.bins else (name, s.name)
                    summed[key] = [a + v for a, v in zip(summed.get(key, [0.0] * len(SCALES)), curve)]
        for (name, where), loss in summed.items():
            best = min(loss)
            argmin = SCALES[loss.index(best)]
            label = f"{where[0]:g}–{where[1]:g} m" if args.bins else where
            print(f"{cam_name} {label} {name:12s} min at s={argmin:<4g} "
                  + " ".join(f"{(v / best - 1) * 100:5.2f}" for v in loss), flush=True)


if __name__ == "__main__":
    main()
