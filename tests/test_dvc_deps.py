"""dvc.yaml: every stage depends on the code it runs, so `dvc repro` reruns a stage
exactly when code it uses changes (a missing dep leaves committed outputs that no
longer match the code)."""

from __future__ import annotations

import ast
from pathlib import Path

import yaml

from tests.conftest import REPO_ROOT

PACKAGE = REPO_ROOT / "src" / "captcha_ocr"
# Modules that cannot change what a stage writes: how it writes (atomically), how it
# shows progress. Keep this list short; anything that computes belongs in deps.
CANNOT_CHANGE_OUTPUTS = {"atomic.py", "progress.py", "__init__.py"}


def module_file(name: str) -> Path | None:
    """The file of a captcha_ocr module, or None for another package."""
    if name != "captcha_ocr" and not name.startswith("captcha_ocr."):
        return None
    path = PACKAGE.parent.joinpath(*name.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def imported_files(script: Path) -> set[Path]:
    """Every captcha_ocr file a script imports, directly or through others, including
    imports inside functions (most of TensorFlow's are)."""
    seen: set[Path] = set()
    todo = [script]
    while todo:
        tree = ast.parse(todo.pop().read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            for name in names:
                path = module_file(name)
                if path is not None and path.is_file() and path not in seen:
                    seen.add(path)
                    todo.append(path)
    return seen


def undeclared(stage: dict) -> list[str]:
    script = REPO_ROOT / stage["cmd"].split()[1]
    deps = [REPO_ROOT / dep for dep in stage["deps"] if "${" not in dep]
    missing = []
    for path in sorted(imported_files(script)):
        if path.name in CANNOT_CHANGE_OUTPUTS:
            continue
        if not any(path == dep or dep in path.parents for dep in deps):
            missing.append(path.relative_to(REPO_ROOT).as_posix())
    return missing


def test_every_stage_depends_on_the_code_it_imports():
    # Given dvc.yaml's stages, when each stage script's imports are followed through
    # the package, then each file reached is among the stage's deps.
    stages = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    missing = {name: undeclared(stage) for name, stage in stages.items()}
    assert not any(missing.values()), f"dvc.yaml deps lack what the stages import: {missing}"


def test_the_walk_finds_imports_inside_functions(tmp_path: Path):
    # Given a script that imports a module only inside a function, then the walk finds it.
    script = tmp_path / "stage.py"
    script.write_text("def main():\n    from captcha_ocr.read import main\n")
    assert PACKAGE / "read.py" in imported_files(script)
