"""The benchmarks' shared results file: one JSON object of named entries, each run
adding or replacing its own entry and keeping the others."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def record(out: Path, name: str, entry: dict[str, Any]) -> None:
    results = json.loads(out.read_text()) if out.exists() else {}
    results[name] = entry
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
