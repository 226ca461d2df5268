"""Where the numba kernels of the cpu backend keep their on-disk cache.

numba keys a cached kernel on its own source file only (mtime and size): a change to a helper it
inlines from another module (``_numba_common``) would silently reuse the stale compiled kernel —
e.g. after a ``git pull`` in an editable install. So every kernel of this backend is cached in a
folder named by a hash of all the backend's numba sources; any change to any of them starts a
fresh cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path

import numba

HERE = Path(__file__).resolve().parent
# every module whose numba functions the backend's kernels compile or inline
SOURCES = ("_numba_common.py", "cpu.py", "cpu_gaussian.py")


def sources_digest(paths) -> str:
    """16 hex digits of the SHA-256 of the files' bytes, in order."""
    h = hashlib.sha256()
    for p in paths:
        h.update(Path(p).read_bytes())
    return h.hexdigest()[:16]


def cache_dir() -> str:
    """``<NUMBA_CACHE_DIR or this package's __pycache__>/focalstack-numba-<digest>``."""
    root = numba.config.CACHE_DIR or str(HERE / "__pycache__")
    return os.path.join(root, f"focalstack-numba-{sources_digest(HERE / s for s in SOURCES)}")


@contextlib.contextmanager
def keyed_cache():
    """Define (import) the kernels inside this block: numba picks a function's cache folder when
    its ``@njit(cache=True)`` decorator runs, from ``numba.config.CACHE_DIR``, which is restored
    afterwards so that other numba users are unaffected."""
    old = numba.config.CACHE_DIR
    numba.config.CACHE_DIR = cache_dir()
    try:
        yield
    finally:
        numba.config.CACHE_DIR = old
