"""The benchmarks' shared results file: one JSON object of named entries, each run
adding or replacing its own entry and keeping the others; and the description of
the machine an entry was measured on, which every entry carries."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

# The vector extensions TensorFlow's CPU kernels (oneDNN) pick their code paths by.
# Two-core machines here differ in them and in speed: the default CRNN of Nov 24
# trained at 767 samples/s on an AMD EPYC with AVX-512 and at 260 on an AVX2-only
# one (bench/results/model_cost.json), so a timing is quoted with the CPU it was
# measured on.
VECTOR_EXTENSIONS = (
    "avx2",
    "fma",
    "avx512f",
    "avx512_vnni",
    "avx512_bf16",
    "amx_bf16",
)


def machine() -> dict[str, Any]:
    """Cores, CPU model and vector extensions, platform: what a timing depends on."""
    cpu_model, flags = _cpuinfo()
    return {
        "cores": os.cpu_count(),
        "cpu": cpu_model or platform.processor() or platform.machine(),
        "vector_extensions": [ext for ext in VECTOR_EXTENSIONS if ext in flags],
        "platform": platform.platform(),
    }


def _cpuinfo() -> tuple[str, set[str]]:
    """The CPU's model name and flags from /proc/cpuinfo (Linux); empty elsewhere."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "", set()
    model, flags = "", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not model:
            model = value.strip()
        elif key == "flags" and not flags:
            flags = set(value.split())
    return model, flags


def record(out: Path, name: str, entry: dict[str, Any]) -> None:
    """Add or replace entry `name` in `out`, stamped with the machine it ran on."""
    results = json.loads(out.read_text()) if out.exists() else {}
    results[name] = {**entry, "machine": entry.get("machine") or machine()}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
