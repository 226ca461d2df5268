"""The automatic working scale (``predict``'s default for ``net`` and ``dfd``) against the full size,
on a strong-blur camera of ``benchmarks/general.py``, and how the AIF comes back to full size.

    .venv/bin/python benchmarks/working_scale.py [--camera portrait85] [--num 8] [--out benchmarks/results/general]

Per method, on the first ``--num`` validation stacks of the camera (built by ``general.py`` on first
use): δ1 / AbsRel against the Xtion depth, AIF PSNR against the true AIF, seconds per stack, for
``--scale 1`` (the stack's own size) and the automatic working scale
(``focalstack.inference.scale.working_scale``); for the network also the working-scale AIF upsampled
bilinearly instead of composed from the full-size frames (what ``to_full_size`` replaces). Ground truth
is used for these metrics only. Writes working_scale.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from types import SimpleNamespace

import torch
import torch.nn.functional as F

import general


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--camera", default="portrait85", choices=sorted(general.CAMERAS))
    ap.add_argument("--num", type=int, default=8)
    ap.add_argument("--out", default=str(general.ROOT / "benchmarks" / "results" / "general"))
    a = ap.parse_args()
    torch.set_num_threads(2)
    from focalstack.data import list_samples, load_sample
    from focalstack.inference import get_method
    from focalstack.inference.network import load_cached, run_network
    from focalstack.inference.scale import resize_stack
    from focalstack.metrics import aif_metrics, depth_metrics
    samples = [load_sample(p) for p in list_samples(general.build(a.camera))[: a.num]]
    rows: dict[str, list] = {}
    for method, label, opts in (("dfd", "dfd, full size", {"scale": 1.0}), ("dfd", "dfd, working scale", {}),
                                ("net", "net, full size", {"scale": 1.0}), ("net", "net, working scale", {})):
        for s in samples:
            t0 = time.perf_counter()
            p = get_method(method)(s, SimpleNamespace(**opts))
            sec = time.perf_counter() - t0
            d = depth_metrics(p.depth_m.view(*s.size_hw), s.depth_m)
            rows.setdefault(label, []).append({"delta1": d["delta1"], "abs_rel": d["abs_rel"], "seconds": sec,
                                               "aif_psnr": aif_metrics(p.aif, s.aif)["psnr"],
                                               "scale": p.extras["scale"]})
            if label == "net, working scale":   # the same network output, its own AIF upsampled instead
                model = load_cached(None, "cpu")[0]
                frames, cam = resize_stack(s.frames, s.camera, p.extras["scale"])
                _, aif = run_network(model, frames, cam, tuple(p.extras["depth_range_m"]))
                up = F.interpolate(aif[None], size=s.size_hw, mode="bilinear", align_corners=False)[0].clamp(0, 1)
                rows.setdefault("net, working scale, AIF upsampled", []).append(
                    {**rows[label][-1], "aif_psnr": aif_metrics(up, s.aif)["psnr"], "seconds": float("nan")})
    mean = {k: {m: sum(r[m] for r in v) / len(v) for m in v[0]} for k, v in rows.items()}
    head = (f"Working scale on `{a.camera}` ({len(samples)} validation stacks, {'×'.join(map(str, samples[0].size_hw))}) — "
            f"{platform.machine()}, 2 threads, torch {torch.__version__}\n\n"
            "| method | δ1 | AbsRel | AIF PSNR [dB] | mean scale | s / stack |\n|---|---:|---:|---:|---:|---:|\n")
    md = head + "".join(f"| {k} | {v['delta1']:.3f} | {v['abs_rel']:.3f} | {v['aif_psnr']:.2f} | {v['scale']:.2f} | "
                        f"{v['seconds']:.2f} |\n".replace("| nan |", "| – |") for k, v in mean.items())
    out = general.Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "working_scale.md").write_text(md)
    (out / "working_scale.json").write_text(json.dumps({"camera": a.camera, "mean": mean, "rows": rows}, indent=2) + "\n")
    print(md)


if __name__ == "__main__":
    main()
