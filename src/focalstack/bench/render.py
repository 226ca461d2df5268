"""Render benchmark: every defocus backend × image size × {forward, forward+backward}.

What is measured, per (backend, size, mode):

* **time**: median over ``repeats`` timed calls, after ``warmup`` untimed calls (which also
  absorb numba's cache load, Triton's and torch.compile's compilation); CUDA is synchronised
  around every call. ``forward`` runs under ``torch.no_grad()``; ``forward+backward`` runs the
  forward with grad on image and σ, then ``torch.autograd.grad`` of a fixed random
  cotangent.
* **CPU time**: median process CPU time (all threads) of the same calls — on a shared or
  loaded machine the fairer comparison between CPU backends (an OpenMP backend that waits
  on a busy core burns more wall time than work).
* **throughput**: megapixels per second, B·H·W / time (one channel-image = B·H·W pixels,
  whatever C is).
* **peak memory** above what the inputs already use:
  CUDA — ``torch.cuda.max_memory_allocated`` minus the allocation before the call;
  CPU — growth of the process's peak resident set (Linux: ``VmHWM`` after the call, reset
  through ``/proc/self/clear_refs`` and after ``malloc_trim``, minus ``VmRSS`` before). It
  sees every byte the call touches (torch tensors, numba scratch, compiled-graph buffers),
  at page granularity; where /proc is not available it is left empty.

Inputs: image ~ U(0, 1); σ ~ U(lo, hi) px, by default (0.5, R/2) — the blur a k-window is
made for. (Below ~0.35 px the reference's float32 exp produces denormals and it slows down
several-fold, which would inflate the speed-ups; ``--sigma 0 1.5`` shows that case.)

Backends: every registered one (``reference``, ``cpu``, ``triton``, … — those that can run
on the device), plus ``compiled``: ``torch.compile`` of a plain-torch loop version of the
reference forward (backward through autograd). A backend that fails (e.g. torch.compile with
no working compiler) gets a row with its error instead of a number.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field

import torch

MODES = ("forward", "forward+backward")
COMPILED = "compiled"


@dataclass
class BenchRow:
    backend: str
    size: int
    batch: int
    channels: int
    kernel_size: int
    mode: str
    status: str = "ok"
    time_ms: float | None = None          # median
    times_ms: list[float] = field(default_factory=list)
    cpu_time_ms: float | None = None      # median process CPU time (all threads) per call
    mpix_per_s: float | None = None
    peak_mem_mib: float | None = None
    setup_s: float | None = None          # warm-up time (compilation included)
    speedup_vs_reference: float | None = None
    speedup_vs_compiled: float | None = None


# --------------------------------------------------------------------------- memory probes


def _libc():
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name) if name else None
    except OSError:
        return None


_LIBC = _libc()


def _proc_status_kib(key: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class _CpuPeak:
    """Peak RSS growth of the process over a block (Linux); None where it cannot be read."""

    def __enter__(self):
        if _LIBC is not None and hasattr(_LIBC, "malloc_trim"):
            _LIBC.malloc_trim(0)
        self.ok = True
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # reset VmHWM to the current RSS
        except OSError:
            self.ok = False
        self.rss0 = _proc_status_kib("VmRSS")
        return self

    def __exit__(self, *exc):
        hwm = _proc_status_kib("VmHWM")
        self.mib = None
        if self.ok and hwm is not None and self.rss0 is not None:
            self.mib = max(0, hwm - self.rss0) / 1024.0
        return False


class _CudaPeak:
    def __init__(self, device):
        self.device = device

    def __enter__(self):
        torch.cuda.synchronize(self.device)
        torch.cuda.reset_peak_memory_stats(self.device)
        self.base = torch.cuda.memory_allocated(self.device)
        return self

    def __exit__(self, *exc):
        torch.cuda.synchronize(self.device)
        self.mib = (torch.cuda.max_memory_allocated(self.device) - self.base) / 2 ** 20
        return False


# --------------------------------------------------------------------------- backends


def _compiled_reference(radius: int, psf: str):
    """torch.compile of the plain-torch loop forward (no custom autograd.Function)."""
    from ..render.reference import _forward

    def plain(image, sigma):
        return _forward(image, sigma, radius, psf)[0]

    return torch.compile(plain, dynamic=False)


def _make_fn(backend: str, radius: int, psf: str):
    if backend == COMPILED:
        return _compiled_reference(radius, psf)
    from ..render.defocus import _BACKENDS, _load_fused
    _load_fused()
    if backend not in _BACKENDS:
        raise ValueError(f"unknown backend {backend!r}")
    fn = _BACKENDS[backend]
    return lambda image, sigma: fn(image, sigma, radius, psf)


def default_backends(device: torch.device) -> list[str]:
    """reference, every fused backend that can run on ``device``, then compiled (last: what
    torch.compile leaves running — its compile workers — must not slow the others down)."""
    from ..render.defocus import _AUTO_ORDER, _load_fused
    _load_fused()
    probe = torch.empty(1, 1, 1, 1, device=device)
    fused = [name for name, available, _ in _AUTO_ORDER if available(probe)]
    return ["reference"] + fused + [COMPILED]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def default_sigma_range(kernel_size: int) -> tuple[float, float]:
    """σ ~ U(0.5, max(0.5, R/2)) px: the blur a k-window is meant for (k = 7: 0.5–1.5 px)."""
    hi = max(0.5, (kernel_size // 2) / 2.0)
    return 0.5, hi


def _inputs(batch: int, channels: int, size: int, sigma_range, device, dtype, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(batch, channels, size, size, generator=g, dtype=dtype)
    lo, hi = sigma_range
    sigma = lo + torch.rand(batch, 1, size, size, generator=g, dtype=dtype) * (hi - lo)
    cot = torch.rand(batch, channels, size, size, generator=g, dtype=dtype)
    return image.to(device), sigma.to(device), cot.to(device)


def _bench_one(fn, mode: str, image, sigma, cot, warmup: int, repeats: int, device):
    if mode == "forward":
        def call():
            with torch.no_grad():
                return fn(image, sigma)
    else:
        img = image.detach().requires_grad_(True)
        sig = sigma.detach().requires_grad_(True)

        def call():
            out = fn(img, sig)
            return torch.autograd.grad(out, (img, sig), cot)

    t0 = time.perf_counter()
    for _ in range(max(1, warmup)):
        r = call()
        _sync(device)
        del r
    setup = time.perf_counter() - t0
    times, cpu_times = [], []
    for _ in range(repeats):
        _sync(device)
        c = time.process_time()
        t = time.perf_counter()
        r = call()
        _sync(device)
        times.append(time.perf_counter() - t)
        cpu_times.append(time.process_time() - c)
        del r
    probe = _CudaPeak(device) if device.type == "cuda" else _CpuPeak()
    with probe:
        r = call()
        _sync(device)
        del r
    return times, cpu_times, probe.mib, setup


def run_render_bench(sizes=(128, 256, 512), kernel_size: int = 7, batch: int = 20, channels: int = 3,
                     repeats: int = 5, warmup: int = 1, backends: list[str] | None = None,
                     modes=MODES, psf: str = "gaussian", device: str | torch.device = "cpu",
                     dtype: torch.dtype = torch.float32, threads: int | None = None,
                     sigma_range: tuple[float, float] | None = None, log=None) -> dict:
    """Run the benchmark; returns {"config": …, "rows": [BenchRow as dict, …]}."""
    device = torch.device(device)
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be a positive odd integer, got {kernel_size}")
    for m in modes:
        if m not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {m!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: CUDA is not available")
    if threads:
        torch.set_num_threads(int(threads))
    radius = kernel_size // 2
    sigma_range = tuple(sigma_range) if sigma_range else default_sigma_range(kernel_size)
    if len(sigma_range) != 2 or not 0 <= sigma_range[0] <= sigma_range[1]:
        raise ValueError(f"sigma range must be 0 <= lo <= hi, got {sigma_range}")
    backends = list(backends) if backends else default_backends(device)
    rows: list[BenchRow] = []
    for size in sizes:
        image, sigma, cot = _inputs(batch, channels, size, sigma_range, device, dtype)
        for backend in backends:
            try:
                fn = _make_fn(backend, radius, psf)
            except Exception as e:  # noqa: BLE001 - reported in the table
                fn, err = None, e
            for mode in modes:
                row = BenchRow(backend, size, batch, channels, kernel_size, mode)
                if log:
                    log(f"bench: {backend:>10} {size}² {mode} …")
                if fn is None:
                    row.status = f"failed: {type(err).__name__}: {err}"
                else:
                    try:
                        times, cpu_times, mem, setup = _bench_one(fn, mode, image, sigma, cot, warmup, repeats,
                                                                  device)
                        med = statistics.median(times)
                        row.cpu_time_ms = 1e3 * statistics.median(cpu_times)
                        row.time_ms = 1e3 * med
                        row.times_ms = [1e3 * t for t in times]
                        row.mpix_per_s = batch * size * size / med / 1e6
                        row.peak_mem_mib = mem
                        row.setup_s = setup
                    except Exception as e:  # noqa: BLE001 - e.g. torch.compile without a compiler
                        msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
                        row.status = f"failed: {type(e).__name__}: {msg[:160]}"
                rows.append(row)
    # speed-ups against the eager and the compiled reference of the same size and mode
    for row in rows:
        for ref, attr in (("reference", "speedup_vs_reference"), (COMPILED, "speedup_vs_compiled")):
            base = next((r for r in rows if r.backend == ref and r.size == row.size and r.mode == row.mode
                         and r.time_ms), None)
            if base is not None and row.time_ms:
                setattr(row, attr, base.time_ms / row.time_ms)
    config = {
        "sizes": list(sizes), "kernel_size": kernel_size, "batch": batch, "channels": channels,
        "repeats": repeats, "warmup": warmup, "backends": backends, "modes": list(modes), "psf": psf,
        "sigma_range_px": list(sigma_range),
        "device": str(device), "dtype": str(dtype).replace("torch.", ""),
        "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
        "affinity": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch": torch.__version__, "python": platform.python_version(), "machine": platform.machine(),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "memory_metric": ("torch.cuda.max_memory_allocated above the pre-call allocation" if device.type == "cuda"
                          else "peak RSS growth over the call (VmHWM reset via /proc/self/clear_refs)"),
    }
    return {"config": config, "rows": [asdict(r) for r in rows]}


def _fmt(x, spec: str) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def format_markdown(result: dict) -> str:
    """One Markdown table of a :func:`run_render_bench` result."""
    cfg = result["config"]
    lines = [
        f"Render benchmark — {cfg['device']} ({cfg['gpu'] or str(cfg['torch_threads']) + ' threads'}), "
        f"k={cfg['kernel_size']}, batch {cfg['batch']}, C={cfg['channels']}, psf {cfg['psf']}, "
        f"σ ~ U({cfg['sigma_range_px'][0]:g}, {cfg['sigma_range_px'][1]:g}) px, {cfg['dtype']}, "
        f"median of {cfg['repeats']}",
        "",
        "| backend | size | mode | time (ms) | MP/s | CPU time (ms) | peak mem (MiB) | × reference | × compiled "
        "| status |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['backend']} | {r['size']}² | {r['mode']} | {_fmt(r['time_ms'], '.1f')} | "
            f"{_fmt(r['mpix_per_s'], '.2f')} | {_fmt(r['cpu_time_ms'], '.0f')} | {_fmt(r['peak_mem_mib'], '.1f')} | "
            f"{_fmt(r['speedup_vs_reference'], '.1f')} | {_fmt(r['speedup_vs_compiled'], '.1f')} | {r['status']} |")
    lines.append("")
    lines.append(f"Speed-ups are wall-time ratios; memory: {cfg['memory_metric']}.")
    return "\n".join(lines)
