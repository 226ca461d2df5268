"""``focalstack bench render``: time and memory of every defocus backend (Markdown + JSON)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..render.psf import PSFS

BENCHES = ("render",)


def register(sub) -> None:
    p = sub.add_parser("bench", help="benchmark the hot paths (render: every defocus backend)")
    p.add_argument("what", choices=BENCHES, help="which benchmark")
    p.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 512], help="square image sizes (px)")
    p.add_argument("--kernel-size", type=int, default=7, help="odd window size k (default 7)")
    p.add_argument("--batch", type=int, default=20, help="images per call (default 20)")
    p.add_argument("--channels", type=int, default=3, help="channels per image (default 3)")
    p.add_argument("--repeats", type=int, default=5, help="timed calls; the median is reported (default 5)")
    p.add_argument("--warmup", type=int, default=1, help="untimed calls first (compilation; default 1)")
    p.add_argument("--backends", nargs="+",
                   help="backends to run (default: reference, compiled, and the fused ones for the device); "
                        "'compiled' is torch.compile of the reference forward")
    p.add_argument("--modes", nargs="+", default=["forward", "forward+backward"],
                   choices=["forward", "forward+backward", "fwd", "fwd+bwd"], help="what to time")
    p.add_argument("--psf", choices=PSFS, default="gaussian")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    p.add_argument("--sigma", type=float, nargs=2, metavar=("LO", "HI"),
                   help="σ ~ U(LO, HI) px (default 0.5 to max(0.5, R/2))")
    p.add_argument("--threads", type=int, help="torch.set_num_threads (also the cpu backend's threads)")
    p.add_argument("--out", nargs="+", default=[], metavar="FILE",
                   help="write the result: *.json (full data) and/or *.md (the table)")
    p.set_defaults(func=run)


def _is_bench_output(path: Path) -> bool:
    """A file this command wrote (its JSON layout, or the table's title line)."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError):
        return False
    if path.suffix == ".md":
        return text.startswith("Render benchmark — ")
    try:
        data = json.loads(text)
    except ValueError:
        return False
    return isinstance(data, dict) and {"config", "rows"} <= set(data)


def run(args) -> int:
    import torch

    from ..bench.render import format_markdown, run_render_bench
    from ..data.io import atomic_write_file

    modes = [{"fwd": "forward", "fwd+bwd": "forward+backward"}.get(m, m) for m in args.modes]
    for path in args.out:
        if Path(path).suffix not in (".json", ".md"):
            raise ValueError(f"--out {path}: use a .json or .md file name")
        if Path(path).exists() and not _is_bench_output(Path(path)):
            raise ValueError(f"--out {path}: exists and is not a render benchmark result focalstack wrote; "
                             "not replacing it (choose a new file name)")
    result = run_render_bench(
        sizes=args.sizes, kernel_size=args.kernel_size, batch=args.batch, channels=args.channels,
        repeats=args.repeats, warmup=args.warmup, backends=args.backends, modes=modes, psf=args.psf,
        device=args.device, dtype=getattr(torch, args.dtype), threads=args.threads, sigma_range=args.sigma,
        log=lambda msg: print(msg, file=sys.stderr, flush=True))
    table = format_markdown(result)
    print(table)
    for path in args.out:
        p = Path(path)
        atomic_write_file(p, json.dumps(result, indent=2) + "\n" if p.suffix == ".json" else table + "\n")
    failed = [r for r in result["rows"] if r["status"] != "ok" and r["backend"] != "compiled"]
    return 1 if failed else 0
