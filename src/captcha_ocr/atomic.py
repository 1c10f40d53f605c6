"""Outputs that appear whole or not at all.

A stage writes into a hidden sibling and renames it into place only when it
has finished, so a stage killed midway never leaves a folder or file that a
later stage (or DVC) could take for complete.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


@contextmanager
def atomic_dir(target: Path | str) -> Iterator[Path]:
    """Yield a scratch folder that replaces `target` when the block succeeds."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    # A run killed outright (SIGKILL, power loss) cannot clean up after itself;
    # the next run of the same stage does.
    for stale in target.parent.glob(f".{target.name}.partial-*"):
        shutil.rmtree(stale, ignore_errors=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    scratch.chmod(0o777 & ~_umask())  # mkdtemp makes it private; outputs are not
    try:
        yield scratch
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target)
    elif target.exists() or target.is_symlink():
        target.unlink()
    os.replace(scratch, target)


@contextmanager
def atomic_file(target: Path | str, mode: str = "w", **open_kwargs: Any) -> Iterator[Any]:
    """Open a temporary file that replaces `target` when the block succeeds."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, scratch = tempfile.mkstemp(prefix=f".{target.name}.partial-", dir=target.parent)
    os.close(handle)
    os.chmod(scratch, 0o666 & ~_umask())  # mkstemp makes it private; outputs are not
    try:
        with open(scratch, mode, **open_kwargs) as stream:
            yield stream
        os.replace(scratch, target)
    except BaseException:
        Path(scratch).unlink(missing_ok=True)
        raise


def write_json(path: Path | str, payload: Any) -> None:
    with atomic_file(path, "w", encoding="utf-8") as stream:
        json.dump(payload, stream, indent=2, sort_keys=False, ensure_ascii=False)
        stream.write("\n")
