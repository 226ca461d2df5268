"""Readers of the standard depth-from-focus benchmarks, as downloaded, into the sample format
(``focalstack import-dataset NAME PATH -o OUT``). One module per dataset, each documenting its
files, camera, ground truth and published evaluation protocols:

* ``nyuv2`` — NYU Depth v2 labelled ``.mat`` (RGB-D), rendered into focal stacks by a named recipe
  (default ``dered``, the core paper's synthesis) — :mod:`.nyuv2`;
* ``ddff12`` — DDFF-12 ``.h5`` (Lytro focal stacks, disparity) — :mod:`.ddff12`;
* ``fod500`` — the DefocusNet release ``fs_6`` (5 TIFFs + EXR depth per sample) — :mod:`.fod500`;
* ``mobiledepth`` — Mobile Depth aligned ``a*.jpg`` + ``calibrated.txt`` — :mod:`.mobiledepth`;
* ``hci4d`` — HCI 4D light fields refocused into focal stacks (disparity PFM) — :mod:`.hci4d`.

Every reader module exposes ``NAME``, ``OPTIONS`` (the command-line options it takes),
``items(path, **options, limit=None) -> list[BenchmarkItem]`` (lazy: nothing is decoded until an
item's ``load()``) and ``settings(**options) -> dict`` (recorded with the import).
"""

from __future__ import annotations

import importlib
from types import ModuleType

from .common import BenchmarkItem, LoadedSample, save_loaded

BENCHMARKS: dict[str, str] = {
    "nyuv2": "nyuv2",
    "ddff12": "ddff12",
    "fod500": "fod500",
    "mobiledepth": "mobiledepth",
    "hci4d": "hci4d",
}
"""Dataset name → reader module under :mod:`focalstack.data.benchmarks`."""


def get_reader(name: str) -> ModuleType:
    """The reader module of a dataset name (ValueError listing the known names)."""
    if name not in BENCHMARKS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(BENCHMARKS)}")
    return importlib.import_module(f"{__name__}.{BENCHMARKS[name]}")


__all__ = ["BENCHMARKS", "BenchmarkItem", "LoadedSample", "get_reader", "save_loaded"]
