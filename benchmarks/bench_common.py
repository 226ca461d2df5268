"""Shared by the benchmark scripts: the machine header, run the CLI, and build the benchmark datasets the same way
everywhere (so the supervision and models tables are trained and tested on identical data) with the
library's dataset synthesis (``focalstack.data.synthesize_dataset``, what ``focalstack synth`` runs)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

FS = [sys.executable, "-m", "focalstack"]


def machine(**extra) -> dict:
    """The machine a table was measured on, for its header: CPU model (/proc/cpuinfo where readable),
    cores, RAM (GiB), torch's thread count and the library versions; ``extra`` (a tool's version, …)
    added."""
    import os
    import platform

    import cv2
    import numpy as np
    import torch

    import focalstack
    cpu = platform.processor() or platform.machine()
    mem_gb = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gb = int(line.split()[1]) / 2**20
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "mem_total_gb": mem_gb, "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), "torch": torch.__version__, "opencv": cv2.__version__,
            "numpy": np.__version__, "focalstack": getattr(focalstack, "__version__", "?"),
            "physics_light": physics_light(), **extra}


def write_results(out: Path, name: str, md_lines: list[str], data, indent: int = 2) -> None:
    """out/name.md (the lines) and out/name.json (``data``), the folder made; the table printed."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.md").write_text("\n".join(md_lines) + "\n")
    (out / f"{name}.json").write_text(json.dumps(data, indent=indent) + "\n")
    print("\n".join(md_lines))


def physics_light() -> str:
    """The light the optics blurred in this run (``focalstack.render.light``), for every table's header:
    results made in the other light are not comparable."""
    from focalstack.render import light
    return light.PHYSICS_LIGHT


def sh(args: list[str]) -> None:
    print("+", " ".join(args), flush=True)
    subprocess.run(args, check=True)


def synth(**settings) -> None:
    """One dataset (``SynthConfig`` fields), quietly; a line naming it."""
    from focalstack.data import SynthConfig, synthesize_dataset
    print("+ synth", " ".join(f"{k}={v}" for k, v in settings.items()), flush=True)
    print(synthesize_dataset(SynthConfig(progress=False, **settings)).summary(), flush=True)


def synth_procedural(d: Path, name: str, n_train: int, n_test: int, size: int, setup: str | None = None) -> None:
    """d/name/train (seed 0) and d/name/test (seed 777) procedural stacks, size×size; ``setup``: one of
    Gur & Wolf's focus sequences (F1/F2/F6/F10) instead of the preset's focus distances."""
    if (d / name / "train").is_dir():
        return
    synth(out_dir=d / f"{name}_train", num=n_train, size=(size, size), seed=0, focus_setup=setup)
    (d / name).mkdir(parents=True, exist_ok=True)
    (d / f"{name}_train").rename(d / name / "train")
    if n_test:
        synth(out_dir=d / f"{name}_test", num=n_test, size=(size, size), seed=777, focus_setup=setup)
        (d / f"{name}_test").rename(d / name / "test")


def synth_dslr(d: Path, shared: Path) -> tuple[Path, Path] | None:
    """Stacks synthesised from the DSLR-indoor RGB-D pairs, split 80/20 by scene (``synth --split``,
    deterministic): (d/dslr/train, d/dslr/val); None when the data is absent."""
    src = shared / "dfd_indoor_carvalho2018"
    if not src.is_dir():
        return None
    if not (d / "dslr" / "train").is_dir():
        synth(out_dir=d / "dslr", source="dslr_indoor", input=src, split=0.2, seed=0)
    return d / "dslr" / "train", d / "dslr" / "val"
