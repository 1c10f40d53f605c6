"""Progress bars for long work: a rate and an ETA on a terminal, quiet in CI and logs."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")


def interactive() -> bool:
    """True on a terminal; False in CI, under pytest's capture, or when piped to a log."""
    return sys.stderr.isatty() and not os.environ.get("CI")


def progress(
    items: Iterable[T], total: int | None = None, desc: str = "", unit: str = "it"
) -> Iterator[T]:
    return iter(
        tqdm(
            items, total=total, desc=desc, unit=unit, disable=not interactive(), dynamic_ncols=True
        )
    )
