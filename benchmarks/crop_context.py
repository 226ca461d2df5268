"""Where a training crop's depth departs from the whole image's: the cost prior, or the network.

    .venv/bin/python benchmarks/crop_context.py DATA [DATA …] [--checkpoint shipped:general] [--crop 128] [--num 20]

For the first ``--num`` stacks of each ``DATA`` folder (e.g. ``bench_work/general/dslr35/train``, made
by ``general.py``), the network's depth over a centred ``--crop``-px crop is compared with its
depth over the same pixels when it reads the whole stack, as ``predict`` does (each stack over its
camera's stated range, at its own size), three ways:

* ``crop alone`` — the crop is all the network sees (``train --crop-context crop``);
* ``whole-image radii`` — the crop alone, but its cost volume aggregated at the radii of the whole
  image (``classical.dfd.aggregation_radii`` of the stack's size, not the crop's);
* ``whole-stack prior`` — the crop with its :class:`focalstack.models.CropView`: the cost maps of the
  whole stack, cut (``train --crop-context view``, the default).

Prints one JSON line per folder: the mean |log d_crop − log d_whole| of each, and δ1 against the
depth.npy over the crop (ground truth read for the report only). What a fine-tune on crops is
trained on, against what ``predict`` will give it (issue 12; README "Any camera").
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from unittest import mock

import torch


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data", nargs="+", type=Path)
    ap.add_argument("--checkpoint", default="shipped:general")
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--num", type=int, default=20)
    a = ap.parse_args(argv)
    torch.set_num_threads(2)
    import focalstack.classical.dfd as dfd
    from focalstack.data import list_samples, load_sample
    from focalstack.inference.network import load_cached
    from focalstack.metrics import depth_metrics
    from focalstack.models import CropView
    from focalstack.optics import CameraBatch

    model = load_cached(a.checkpoint)[0].eval()
    c = a.crop
    radii = dfd.aggregation_radii
    for data in a.data:
        rows = []
        for p in list_samples(data)[: a.num]:
            s = load_sample(p, load_aif=False)
            fr, (h, w) = s.frames.float()[None], s.size_hw
            cam = CameraBatch.from_cameras([s.camera])
            rng = torch.tensor([s.camera.effective_depth_range_m()], dtype=torch.float32)
            y, x = (h - c) // 2, (w - c) // 2
            crop = fr[..., y:y + c, x:x + c]
            with torch.no_grad():
                whole = model(fr, cam, rng)["depth_m"][..., y:y + c, x:x + c]
                alone = model(crop, cam, rng)["depth_m"]
                with mock.patch.object(dfd, "aggregation_radii", lambda hh, ww, scales=dfd.AGGREGATION_SCALES:
                                       radii(h, w, scales)):
                    wide = model(crop, cam, rng)["depth_m"]
                viewed = model(crop, cam, rng, view=CropView([fr[0]], [cam], [(y, x)], [(False, False)]))["depth_m"]
            gt = s.depth_m.float()[y:y + c, x:x + c]
            rows.append([float((whole.log() - d.log()).abs().mean()) for d in (alone, wide, viewed)] +
                        [depth_metrics(d[0, 0], gt)["delta1"] for d in (whole, alone, wide, viewed)])
        m = torch.tensor(rows).mean(0).tolist()
        print(json.dumps({"data": str(data), "stacks": len(rows), "crop_px": c, "checkpoint": a.checkpoint,
                          "mean_abs_dlog": {"crop alone": round(m[0], 4), "whole-image radii": round(m[1], 4),
                                            "whole-stack prior": round(m[2], 4)},
                          "delta1": {"whole image": round(m[3], 4), "crop alone": round(m[4], 4),
                                     "whole-image radii": round(m[5], 4), "whole-stack prior": round(m[6], 4)}}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
