"""Summarise py-spy raw (collapsed-stack) profiles: where the samples went.

    python benchmarks/profile_summary.py FILE.txt [--top 25] [--match TEXT] [--lines]

Prints the total number of samples, then the functions with the most *inclusive* samples
(the function or anything it called was on the stack) and the most *self* samples (it was on
top). ``--match`` restricts the inclusive list to frames containing TEXT (e.g. ``container/``).
By default frames are aggregated per function (``name (file)``); ``--lines`` keeps the line
numbers. Idle time in the reactor (``epoll`` wait) is not sampled by py-spy unless it was
recorded with ``--idle``, so the total is the busy time.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_LINE = re.compile(r"^(?P<stack>.*) (?P<count>\d+)$")
_LINENO = re.compile(r":\d+\)$")


def load(path: Path, keep_lines: bool) -> list[tuple[list[str], int]]:
    stacks = []
    for raw in path.read_text().splitlines():
        match = _LINE.match(raw)
        if not match:
            continue
        frames = match["stack"].split(";")
        if not keep_lines:
            frames = [_LINENO.sub(")", frame) for frame in frames]
        stacks.append((frames, int(match["count"])))
    return stacks


def summarise(stacks: list[tuple[list[str], int]], top: int, match: str) -> str:
    total = sum(count for _, count in stacks)
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    for frames, count in stacks:
        for frame in set(frames):
            inclusive[frame] += count
        if frames:
            own[frames[-1]] += count
    out = [f"{total} samples"]
    out.append(f"\ninclusive (top {top}{', matching ' + repr(match) if match else ''}):")
    shown = [(f, c) for f, c in inclusive.most_common() if not match or match in f][:top]
    out += [f"  {c / total * 100:5.1f}%  {c:7d}  {f}" for f, c in shown]
    out.append(f"\nself (top {top}):")
    out += [f"  {c / total * 100:5.1f}%  {c:7d}  {f}" for f, c in own.most_common(top)]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--match", default="")
    parser.add_argument("--lines", action="store_true", help="keep line numbers")
    args = parser.parse_args()
    for path in args.files:
        print(f"== {path}")
        print(summarise(load(path, args.lines), args.top, args.match))


if __name__ == "__main__":
    main()
