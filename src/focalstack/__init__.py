"""focalstack: metric depth and all-in-focus images from focal stacks.

The pipeline reads like the method: ``optics`` (thin lens, cameras, presets) →
``render`` (differentiable defocus) → ``data`` (sample format, synthesis, datasets) →
``models`` → ``losses`` / ``train`` → ``metrics``; ``classical`` holds the non-learned
baselines and ``cli`` the one command line.
"""

__version__ = "0.1.0"

import os as _os
import sys as _sys

# The fused CPU kernels run on focalstack's own threads between torch ops; torch's OpenMP workers
# would otherwise busy-wait after every op and take the cores from them (measured: the optimiser's
# coarse levels 1.3–4× slower, worst on a loaded machine). libgomp reads this once, when torch
# loads it, so it applies only if focalstack is imported first (the CLI always is); a value the
# user set is kept.
if "torch" not in _sys.modules:
    _os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
