"""How ``train``'s views (focalstack.train.views) read a training set: per stack the depth range its
defocus evidence supports and its working scale, against each camera's stated range.

    python benchmarks/train_views.py DATA_DIR [--crop 128 128]

Prints one JSON line: stacks, seconds to read them (2 threads), how many ranges were narrowed and
how many stacks rescaled, and the ratio of the views' inverse-depth extent to the stated one
(min, mean).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data_dir")
    ap.add_argument("--crop", type=int, nargs=2, default=(128, 128), metavar=("H", "W"))
    args = ap.parse_args()
    torch.set_num_threads(2)
    from focalstack.data import list_samples
    from focalstack.data.format import load_camera
    from focalstack.train.views import dataset_views
    paths = list_samples(Path(args.data_dir))
    stated = [load_camera(p).effective_depth_range_m() for p in paths]
    t0 = time.perf_counter()
    views = dataset_views(paths, [p.name for p in paths], stated, tuple(args.crop))
    seconds = time.perf_counter() - t0

    def inv_extent(r):
        return 1.0 / r[0] - 1.0 / r[1]

    ratio = [inv_extent(v.depth_range_m) / inv_extent(s) for v, s in zip(views, stated)]
    print(json.dumps({"stacks": len(paths), "seconds": round(seconds, 1),
                      "narrowed": sum(1 for x in ratio if x < 1 - 1e-6), "rescaled": sum(1 for v in views if v.scale < 1),
                      "inv_extent_ratio_min": round(min(ratio), 3), "inv_extent_ratio_mean": round(sum(ratio) / len(ratio), 3)}))


if __name__ == "__main__":
    main()
