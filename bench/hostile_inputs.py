"""Hostile and careless inputs, by the hundred: does each get a clear refusal or
get handled, and never a traceback?

    python bench/hostile_inputs.py --name hostile_2026-12-07

Groups (each case is counted once):
- params: every key of params.yaml set to each of a list of wrong types, edges and
  extremes, validated as a stage would; and params files that are no params file.
- images: hostile bytes through images.load_image (bombs, garbage, every truncation
  step of a real captcha, random bytes, headers that lie).
- import: a folder and a CSV of careless and hostile rows through the import stage's
  library call, with on_error: skip.

Verdicts: `refused` (the error names the key, file or row, with a reason), `handled`
(accepted: a value within bounds, an image read), `bad` (any other exception, or an
accepted value out of bounds). Writes bench/results/hostile_inputs.json.
"""

from __future__ import annotations

import argparse
import copy
import io
import math
import os
import random
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import yaml
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.results_json import record
from captcha_ocr.images import ImageRefused, load_image
from captcha_ocr.importing import ImportFailed, import_dataset
from captcha_ocr.params import Params, ParamsError, flatten, load_params, parse_params
from tests.conftest import bomb_png

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results" / "hostile_inputs.json"
VALUES = [
    None, True, False, "", "x" * 10_000, "🙂", [], {}, [1, 2, 3], {"a": 1},
    -1, 0, 2**31, 2**40, 10**12, -(10**12), 1e308, -1e308,
    float("inf"), float("-inf"), float("nan"), 0.5, [float("nan")], [10**9],
]  # fmt: skip
DOTTED = re.compile(r"^(<top level>|[a-z0-9_.]+): .+")


def numbers_in(value: Any) -> list[float]:
    if isinstance(value, dict):
        return [n for inner in value.values() for n in numbers_in(inner)]
    if isinstance(value, list | tuple):
        return [n for inner in value for n in numbers_in(inner)]
    return [value] if isinstance(value, int | float) and not isinstance(value, bool) else []


def params_cases() -> list[tuple[str, str]]:
    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    verdicts = []
    for key in sorted(flatten(Params())):
        for value in VALUES:
            raw = copy.deepcopy(base)
            *sections, last = key.split(".")
            node = raw
            for section in sections:
                node = node[section]
            node[last] = value
            try:
                params = parse_params(raw, root=ROOT)
            except ParamsError as error:
                lines = str(error).splitlines()[1:]
                ok = lines and all(DOTTED.match(line) for line in lines)
                verdicts.append(("refused" if ok else "bad", f"{key}={value!r:.40}"))
                continue
            except Exception as error:  # counting what escapes is the point
                verdicts.append(("bad", f"{key}={value!r:.40}: {type(error).__name__}"))
                continue
            numbers = numbers_in(params.model_dump())
            bounded = all(math.isfinite(n) and abs(n) <= 2**32 for n in numbers)
            verdicts.append(("handled" if bounded else "bad", f"{key}={value!r:.40}"))
    return verdicts


def params_file_cases(scratch: Path) -> list[tuple[str, str]]:
    contents: dict[str, bytes] = {
        "empty": b"",
        "comment only": b"# nothing\n",
        "section twice": b"train: {}\ntrain: {}\n",
        "key twice": b"train:\n  epochs: 2\n  epochs: 3\n",
        "binary": bytes(range(256)),
        "bad yaml": b"train: [unclosed\n",
        "a list": b"- 1\n- 2\n",
        "a number": b"42\n",
        "latin-1": "data:\n  charset: caf\xe9\n".encode("latin-1"),
    }
    verdicts = []
    for name, content in contents.items():
        path = scratch / f"params-{len(verdicts)}.yaml"
        path.write_bytes(content)
        verdicts.append(_load_verdict(path, name))
    verdicts.append(_load_verdict(scratch, "a folder"))
    verdicts.append(_load_verdict(scratch / "absent.yaml", "absent"))
    return verdicts


def _load_verdict(path: Path, name: str) -> tuple[str, str]:
    try:
        load_params(path)
    except ParamsError:
        return ("refused", f"params file: {name}")
    except Exception as error:  # counting what escapes is the point
        return ("bad", f"params file: {name}: {type(error).__name__}")
    return ("bad", f"params file: {name}: accepted")


def captcha_png(text: str, seed: int) -> bytes:
    image = Image.new("RGB", (160, 60), "white")
    draw = ImageDraw.Draw(image)
    draw.text((10, 20), text, fill="black")
    generator = random.Random(seed)
    for _ in range(30):
        draw.point((generator.randrange(160), generator.randrange(60)), fill="gray")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def image_cases() -> list[tuple[str, str]]:
    good = captcha_png("K7PX", 1)
    generator = random.Random(7)
    cases: dict[str, bytes] = {"good captcha": good}
    for side in (3_000, 10_000, 14_000, 30_000):
        cases[f"bomb {side}x{side}"] = bomb_png(side, side)
    for cut in range(0, len(good), max(1, len(good) // 150)):
        cases[f"captcha cut at {cut} bytes"] = good[:cut]
    for index in range(60):
        cases[f"random bytes #{index}"] = generator.randbytes(generator.randrange(1, 5000))
    for index in range(40):
        spoiled = bytearray(good)
        for _ in range(8):
            spoiled[generator.randrange(8, len(spoiled))] = generator.randrange(256)
        cases[f"flipped bytes #{index}"] = bytes(spoiled)
    header = good[:16] + (65535).to_bytes(4, "big") + (65535).to_bytes(4, "big") + good[24:]
    cases["header claims 65535x65535"] = header
    verdicts = []
    for name, content in cases.items():
        try:
            load_image(io.BytesIO(content))
            verdicts.append(("handled", f"image: {name}"))
        except ImageRefused:
            verdicts.append(("refused", f"image: {name}"))
        except Exception as error:  # counting what escapes is the point
            verdicts.append(("bad", f"image: {name}: {type(error).__name__}: {error}"[:200]))
    return verdicts


def import_cases(scratch: Path) -> list[tuple[str, str]]:
    folder = scratch / "captchas"
    folder.mkdir()
    outside = scratch / "outside.png"
    outside.write_bytes(captcha_png("OUT1", 2))
    rows = ["file,label"]
    for index in range(40):
        (folder / f"good{index}.png").write_bytes(captcha_png(f"AB{index:02d}", 100 + index))
        rows.append(f"good{index}.png,AB{index:02d}")
    (folder / "bomb.png").write_bytes(bomb_png(10_000, 10_000))
    (folder / "copy.png").write_bytes((folder / "good0.png").read_bytes())
    (folder / "link.png").symlink_to(outside)
    (folder / os.fsdecode(b"caf\xe9.png")).write_bytes(captcha_png("CAFE", 3))
    (folder / "text.png").write_text("not an image")
    rows += [
        "bomb.png,BOMB", "copy.png,AB00", "link.png,LINK", "text.png,TEXT",
        "../outside.png,OUT1", f"{outside},OUT2", "/etc/passwd,PASS", "../../etc/passwd,PASS",
        "good1.png,ZZ99", "absent.png,ABSE", f"good2.png,{'A' * 200}", "good3.png,",
        "good4.png,ab", "folder/,FOLD",
    ]  # fmt: skip
    (folder / "labels.csv").write_text("\n".join(rows) + "\n", encoding="utf-8-sig")
    params = parse_params(
        {
            "data": {"source": "imported"},
            "import": {"labels": "csv", "csv": "captchas/labels.csv", "on_error": "skip"},
        }
    )
    try:
        import_dataset(params.data, params.import_, scratch / "out", root=scratch)
    except ImportFailed as error:
        return [("refused", f"import: the whole CSV: {error}"[:200])]
    except Exception as error:  # counting what escapes is the point
        return [("bad", f"import: {type(error).__name__}: {error}"[:200])]
    report = (scratch / "out" / "import_report.csv").read_text(encoding="utf-8")
    verdicts = []
    for line in report.splitlines()[1:]:
        status = "handled" if ",imported," in line else "refused"
        verdicts.append((status, f"import: {line}"[:200]))
    return verdicts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--name", default="hostile_inputs")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    groups: dict[str, list[tuple[str, str]]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        groups["params keys"] = params_cases()
        groups["params files"] = params_file_cases(Path(scratch))
        groups["images"] = image_cases()
        groups["import rows"] = import_cases(Path(scratch))
    summary = {}
    for group, verdicts in groups.items():
        counts = Counter(verdict for verdict, _ in verdicts)
        summary[group] = {
            "tried": len(verdicts),
            "refused": counts["refused"],
            "handled": counts["handled"],
            "bad": counts["bad"],
            "bad_cases": [case for verdict, case in verdicts if verdict == "bad"][:50],
        }
        print(f"{group}: {summary[group] | {'bad_cases': len(summary[group]['bad_cases'])}}")
    totals = {
        key: sum(group[key] for group in summary.values())
        for key in ("tried", "refused", "handled", "bad")
    }
    print(f"all: {totals} in {time.perf_counter() - started:.0f} s")
    record(args.out, args.name, {"groups": summary, "totals": totals})
    return 1 if totals["bad"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
