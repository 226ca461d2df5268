"""CPU worker threads shared by every kernel that releases the GIL: the numba renderer, SSIM, L1
and sRGB kernels.

One pool per process, sized by torch's intra-op thread count (``torch.set_num_threads``) unless
:class:`kernel_threads` overrides it, so every fast path obeys the same ``--threads`` setting and
no two pools compete for the cores. Work is split as ``kernel(*args, first, step)``: task t goes to
thread t mod threads (numba's ``parallel=True``/prange would do the same for the numba kernels but
costs ~3× their compile time).
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import torch

__all__ = ["num_threads", "kernel_threads", "run_parallel", "run_parallel_calls"]

_kernel_threads: list[int] = []   # a stack of overrides (kernel_threads), innermost last


def num_threads() -> int:
    """Worker threads of the kernels: torch's intra-op thread count (``torch.set_num_threads``),
    unless :class:`kernel_threads` overrides it."""
    return _kernel_threads[-1] if _kernel_threads else max(1, torch.get_num_threads())


class kernel_threads:
    """``with kernel_threads(n):`` the kernels use n threads whatever torch's own count is — so a
    caller can run torch's small elementwise ops on one thread (their parallel regions cost more
    than they save on small tensors) while the kernels keep every core."""

    def __init__(self, n: int):
        self.n = max(1, int(n))

    def __enter__(self):
        _kernel_threads.append(self.n)
        return self

    def __exit__(self, *exc):
        _kernel_threads.pop()


_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_pool_pid = 0
_pool_lock = threading.Lock()


def run_parallel(kernel, args: tuple, threads: int) -> None:
    """Run ``kernel(*args, first, step)`` on ``threads`` threads; task t goes to thread t mod threads.
    The kernel must release the GIL (``nogil`` numba, OpenCV) for the threads to run in parallel."""
    run_parallel_calls([(kernel, args)], threads)


def run_parallel_calls(calls: list, threads: int) -> None:
    """:func:`run_parallel` for several ``(kernel, args)`` calls in one parallel region: each thread
    runs its share of every call's tasks in turn, so the threads meet once, not once per call."""
    global _pool, _pool_size, _pool_pid
    if threads <= 1:
        for kernel, args in calls:
            kernel(*args, 0, 1)
        return
    with _pool_lock:
        # a forked child (DataLoader worker) inherits the pool object but not its threads
        if _pool is None or _pool_size < threads - 1 or _pool_pid != os.getpid():
            if _pool is not None and _pool_pid == os.getpid():
                _pool.shutdown(wait=False)
            _pool = ThreadPoolExecutor(max_workers=threads - 1, thread_name_prefix="focalstack-cpu")
            _pool_size = threads - 1
            _pool_pid = os.getpid()
        pool = _pool

    def share(t):
        for kernel, args in calls:
            kernel(*args, t, threads)

    futures = [pool.submit(share, t) for t in range(1, threads)]
    share(0)
    for f in futures:
        f.result()
