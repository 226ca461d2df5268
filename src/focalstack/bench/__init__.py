"""Benchmarks (``focalstack bench ...``): timing and memory of the hot paths."""

from .render import format_markdown, run_render_bench

__all__ = ["run_render_bench", "format_markdown"]
