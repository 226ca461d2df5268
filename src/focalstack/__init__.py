"""focalstack: metric depth and all-in-focus images from focal stacks.

The pipeline reads like the method: ``optics`` (thin lens, cameras, presets) →
``render`` (differentiable defocus) → ``data`` (sample format, synthesis, datasets) →
``models`` → ``losses`` / ``train`` → ``metrics``; ``classical`` holds the non-learned
baselines and ``cli`` the one command line.
"""

__version__ = "0.1.0"
