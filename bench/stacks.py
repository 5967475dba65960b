"""Summarise py-spy's collapsed stacks: `python -m bench.stacks FILE [--top 25]`.

Prints the share of samples in which each function appears anywhere on the
stack (inclusive) and on top of it (self), idle waits excluded.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

IDLE = (
    "select (selectors.py",
    "epoll",
    "_worker (concurrent/futures/thread.py",
    "wait (threading.py",
    "_run_once (asyncio/base_events.py)",
)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("file")
    p.add_argument("--top", type=int, default=25)
    args = p.parse_args()
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = idle = 0
    for line in Path(args.file).read_text().splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not count_s.isdigit():
            continue
        count = int(count_s)
        frames = stack.split(";")
        total += count
        if any(marker in frames[-1] for marker in IDLE):
            idle += count
            continue
        for frame in set(frames):
            inclusive[frame] += count
        own[frames[-1]] += count
    busy = total - idle
    print(f"{args.file}: {total} samples, {busy} busy ({busy / max(total, 1):.0%})")
    print("-- inclusive (share of busy samples)")
    for frame, count in inclusive.most_common(args.top):
        print(f"{count / max(busy, 1):6.1%}  {frame}")
    print("-- self")
    for frame, count in own.most_common(args.top):
        print(f"{count / max(busy, 1):6.1%}  {frame}")


if __name__ == "__main__":
    main()
