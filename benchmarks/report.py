"""Figures, targets, the machine description, the printed table and the JSON file.

A *figure* is one measured quantity (``api_start.n200.container``) with its samples (one per
run); it is reported as median, min and max. A figure that could not be measured keeps
``median: null`` and says why in ``error``. A *row* of the table puts a figure of ours next
to its reference (the floor or Crossbar.io) with their ratio; a *target* compares a figure
(or a ratio) with the limit the issue sets.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import statistics
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any


@dataclass
class Figure:
    key: str
    label: str
    unit: str
    samples: list[float] = field(default_factory=list)
    error: str | None = None

    @property
    def median(self) -> float | None:
        return statistics.median(self.samples) if self.samples else None

    def as_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "unit": self.unit,
            "median": self.median,
            "min": min(self.samples) if self.samples else None,
            "max": max(self.samples) if self.samples else None,
            "runs": len(self.samples),
            "samples": self.samples,
            "error": self.error,
        }


@dataclass
class Row:
    section: str
    label: str
    ours: str
    reference: str | None
    reference_name: str = ""


@dataclass
class Target:
    name: str
    figure: str  # a figure key, or "A/B" for the ratio of two figures
    limit: float
    comparison: str = "<="  # "<=", "<" or ">="

    def value(self, figures: dict[str, Figure]) -> float | None:
        if "/" in self.figure:
            top, bottom = self.figure.split("/", 1)
            return ratio(figures.get(top), figures.get(bottom))
        figure = figures.get(self.figure)
        return figure.median if figure else None

    def as_json(self, figures: dict[str, Figure]) -> dict[str, Any]:
        value = self.value(figures)
        met = None
        if value is not None:
            met = {"<=": value <= self.limit, "<": value < self.limit,
                   ">=": value >= self.limit}[self.comparison]
        return {"name": self.name, "figure": self.figure, "value": value,
                "comparison": self.comparison, "limit": self.limit, "met": met}


def ratio(top: Figure | None, bottom: Figure | None) -> float | None:
    if top is None or bottom is None or top.median is None or not bottom.median:
        return None
    return top.median / bottom.median


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile (``fraction`` in 0..1) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


# -- machine ---------------------------------------------------------------------------------


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def machine() -> dict[str, Any]:
    import psutil

    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": _cpu_model(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "twisted": _version("twisted"),
        "autobahn": _version("autobahn"),
        "txaio": _version("txaio"),
        "crossbar": _version("crossbar"),
        "wamp_container": _version("wamp-container"),
        "loadavg_start": list(os.getloadavg()),
    }


# -- formatting ------------------------------------------------------------------------------


def _number(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit == "s":
        return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.2f} s"
    if unit == "ms":
        return f"{value:.2f} ms"
    if unit == "MiB":
        return f"{value:.1f} MiB"
    if unit == "KiB":
        return f"{value:.1f} KiB"
    if unit == "%":
        return f"{value:.1f} %"
    if unit == "/s":
        return f"{value:.0f}/s"
    return f"{value:.3g} {unit}".strip()


def describe(figure: Figure | None) -> str:
    """``median [min-max]`` in the figure's unit, or why it is missing."""
    if figure is None:
        return "n/a"
    if figure.median is None:
        return "n/a" if not figure.error else "error"
    low, high = min(figure.samples), max(figure.samples)
    if len(figure.samples) == 1:
        return _number(figure.median, figure.unit)
    return (f"{_number(figure.median, figure.unit)} "
            f"[{_number(low, figure.unit)}..{_number(high, figure.unit)}]")


def table(figures: dict[str, Figure], rows: list[Row], targets: list[Target]) -> str:
    """The human-readable table: ours | reference | ratio, then the targets."""
    out: list[str] = []
    widths = (36, 36, 44, 7)
    section = None
    for row in rows:
        if row.section != section:
            section = row.section
            out.append("")
            out.append(section)
        ours = figures.get(row.ours)
        reference = figures.get(row.reference) if row.reference else None
        r = ratio(ours, reference)
        ref_text = f"{row.reference_name}: {describe(reference)}" if row.reference else ""
        cells = (f"  {row.label}", describe(ours), ref_text, f"{r:.2f}x" if r else "")
        out.append("".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip())
    out.append("")
    out.append("Targets")
    for target in targets:
        result = target.as_json(figures)
        value = result["value"]
        verdict = {True: "MET", False: "MISSED", None: "n/a"}[result["met"]]
        shown = "n/a" if value is None else f"{value:.3g}"
        out.append(f"  {verdict:7} {target.name}: {shown} {target.comparison} {target.limit:g}")
    errors = [f for f in figures.values() if f.error]
    if errors:
        out.append("")
        out.append("Errors")
        for figure in errors:
            out.append(f"  {figure.key}: {figure.error}")
    return "\n".join(out)


def write_json(
    path: Path, settings: dict[str, Any], machine_info: dict[str, Any],
    figures: dict[str, Figure], rows: list[Row], targets: list[Target],
) -> None:
    document = {
        "machine": machine_info,
        "settings": settings,
        "figures": {key: figure.as_json() for key, figure in figures.items()},
        "ratios": {
            f"{row.ours}/{row.reference}": ratio(figures.get(row.ours), figures.get(row.reference))
            for row in rows if row.reference
        },
        "targets": [target.as_json(figures) for target in targets],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")


def print_flush(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()
