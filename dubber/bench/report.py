"""The one output format of every benchmark: a figure per line, or JSON with ``--json``.

Lines look like ``name: value unit  (target ...)``, printed as soon as each figure is
measured (some benchmarks run for minutes); ``--json`` prints one JSON object at the end
instead: ``{"bench": ..., "context": {...}, "figures": {name: {"value", "unit", "target"}}}``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    """``--json``: print the figures as one JSON object (to stdout, or to a file)."""
    parser.add_argument("--json", nargs="?", const="-", default=None, metavar="FILE",
                        help="print the figures as JSON at the end (or write them to FILE)")


def clip_parser(name: str, doc: str) -> argparse.ArgumentParser:
    """The parser of a benchmark that dubs one clip: CLIP, --audio DUB, --preset, --weights
    (add the benchmark's own options, then :func:`add_json_flag`)."""
    ap = argparse.ArgumentParser(prog=f"python -m dubber.bench {name}",
                                 description=doc.split("\n")[0])
    ap.add_argument("clip")
    ap.add_argument("--audio", required=True, help="the dub track")
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--weights", default=None, help="folder of trained weights")
    return ap


class Report:
    """Collects and prints one benchmark's figures.

    Args:
        bench: the benchmark's name (``render``, ``models``, ...).
        json_to: None for lines; ``"-"`` for JSON on stdout; else a file for the JSON (the
            lines are printed too).
    """

    def __init__(self, bench: str, json_to: str | None = None) -> None:
        self.bench = bench
        self.json_to = json_to
        self.context: dict[str, Any] = {}
        self.figures: dict[str, dict[str, Any]] = {}

    @property
    def _lines(self) -> bool:
        return self.json_to != "-"

    def info(self, name: str, value: Any) -> None:
        """Context that is not a figure (the machine, the clip, the settings)."""
        self.context[name] = value
        if self._lines:
            print(f"{name}: {value}", flush=True)

    def figure(self, name: str, value: float | int | str | None, unit: str = "",
               target: str | None = None) -> None:
        """One measured figure."""
        if isinstance(value, float) and not math.isfinite(value):
            value = None
        self.figures[name] = {"value": value, "unit": unit, "target": target}
        if self._lines:
            shown = f"{value:.4g}" if isinstance(value, float) else str(value)
            tail = f"  (target {target})" if target else ""
            print(f"{name}: {shown}{' ' + unit if unit else ''}{tail}", flush=True)

    def as_dict(self) -> dict[str, Any]:
        return {"bench": self.bench, "context": self.context, "figures": self.figures}

    def close(self) -> None:
        """Write the JSON, when asked for."""
        if self.json_to is None:
            return
        text = json.dumps(self.as_dict(), indent=1, default=str) + "\n"
        if self.json_to == "-":
            sys.stdout.write(text)
        else:
            with open(self.json_to, "w") as f:
                f.write(text)
