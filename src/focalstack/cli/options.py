"""Command-line options generated from config dataclasses, so a setting is declared once: in its
dataclass field.

A field becomes an option when its ``metadata`` has a ``"flag"`` (``"--max-steps"``; a name
without dashes is a positional argument). Further keys: ``"help"``, ``"choices"``, ``"metavar"``,
``"required"``; for a bool field, ``"negate": True`` makes the flag a switch that sets it False
(``--no-flip``), and ``"also"`` names other fields the switch sets with it. The annotation gives
the value's type: ``int``, ``float``, ``str`` (optional or not), ``tuple[float, float]`` (two
values, ``nargs=2``).

Options default to "not given" (None): :meth:`Options.given` returns only what the command line
set, so a command can lay it over a saved or default config.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any

__all__ = ["Options", "fill_when_used"]


def _value_type(annotation) -> tuple[type, int | None]:
    """(element type, nargs) of a field annotation: ``int | None`` → (int, None), ``tuple[int, int]`` → (int, 2)."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        annotation = args[0]
    if typing.get_origin(annotation) is tuple:
        elems = typing.get_args(annotation)
        if Ellipsis in elems:
            return elems[0], "+"
        return elems[0], len(elems)
    return annotation, None


class Options:
    """The options of one config dataclass ``cls``; ``prefix`` keeps their argparse names apart from
    another class's (``loss_teacher`` beside ``teacher``). ``inherited=False``: only the fields ``cls``
    declares itself, not those of its dataclass bases (whose options another :class:`Options` adds)."""

    def __init__(self, cls: type, prefix: str = "", inherited: bool = True):
        self.cls = cls
        self.prefix = prefix
        hints = typing.get_type_hints(cls)
        skip = set() if inherited else {f.name for base in cls.__mro__[1:] if dataclasses.is_dataclass(base)
                                         for f in dataclasses.fields(base)}
        self.fields = [(f, hints[f.name]) for f in dataclasses.fields(cls)
                       if f.metadata.get("flag") and f.name not in skip]

    def dest(self, f: dataclasses.Field) -> str:
        return self.prefix + f.name

    def add_to(self, parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
        for f, annotation in self.fields:
            meta = f.metadata
            flag = meta["flag"]
            kw: dict[str, Any] = {"help": meta.get("help")}
            if not flag.startswith("-"):                         # positional
                parser.add_argument(flag, **kw)
                continue
            kw["dest"] = self.dest(f)
            if meta.get("negate"):
                parser.add_argument(flag, action="store_const", const=False, default=None, **kw)
                continue
            typ, nargs = _value_type(annotation)
            if typ is bool:
                raise TypeError(f"{self.cls.__name__}.{f.name}: a bool option needs 'negate' (a --no-... switch)")
            if typ in (int, float):
                kw["type"] = typ
            if nargs is not None:
                kw["nargs"] = nargs
            for key in ("choices", "metavar", "required"):
                if key in meta:
                    kw[key] = list(meta[key]) if key == "choices" else meta[key]
            if self.prefix and "metavar" not in kw and "choices" not in kw:   # named after the flag, not the dest
                kw["metavar"] = flag.lstrip("-").replace("-", "_").upper()
            parser.add_argument(flag, default=None, **kw)

    def given(self, args: argparse.Namespace) -> dict[str, Any]:
        """field name → value for the options the command line set (a switch also sets its ``also`` fields)."""
        out: dict[str, Any] = {}
        for f, _ in self.fields:
            flag = f.metadata["flag"]
            v = getattr(args, flag if not flag.startswith("-") else self.dest(f), None)
            if v is None:
                continue
            out[f.name] = v
            for other in f.metadata.get("also", ()):
                out[other] = v
        return out


class _FilledWhenUsed(argparse.ArgumentParser):
    """A (sub)parser whose options are added the first time it parses or prints its help."""

    _fill: Any = None

    def _filled(self) -> None:
        fill, self._fill = self._fill, None
        if fill is not None:
            fill(self)

    def parse_known_args(self, args=None, namespace=None):
        self._filled()
        return super().parse_known_args(args, namespace)

    def format_help(self) -> str:
        self._filled()
        return super().format_help()

    def format_usage(self) -> str:
        self._filled()
        return super().format_usage()


def fill_when_used(parser: argparse.ArgumentParser, fill) -> None:
    """Call ``fill(parser)`` to add the options only when ``parser`` is used: generating them imports
    the config classes (and so the models and losses), which the other commands need not pay for."""
    parser.__class__ = _FilledWhenUsed
    parser._fill = fill
