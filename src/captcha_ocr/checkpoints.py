"""Training state that outlives an interrupted train stage, so a restart resumes.

The folder (by default .checkpoints/train, outside DVC's outputs, which DVC
deletes before a stage runs) holds Keras's BackupAndRestore state (weights,
optimizer, epoch), what that leaves out (the random-number states of the
model's dropout, ReduceLROnPlateau's reductions) after each epoch, the best
model so far, the CSV log of every epoch, and a fingerprint of what is being
trained. A restart with the same params and data resumes after the last
finished epoch; anything else starts afresh. A successful run removes the
folder.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pandas as pd

BACKUP = "backup"
BEST_MODEL = "best.keras"
CSV_LOG = "training_log.csv"
EXTRA_STATE = "extra_state.json"
FINGERPRINT = "fingerprint.json"


def fingerprint(*parts: Any) -> str:
    """A hash of what decides the training: params sections and the data hash."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class Checkpoints:
    def __init__(self, folder: Path | str, fingerprint: str) -> None:
        self.folder = Path(folder)
        self.fingerprint = fingerprint

    @property
    def backup_dir(self) -> Path:
        return self.folder / BACKUP

    @property
    def best_model(self) -> Path:
        return self.folder / BEST_MODEL

    @property
    def csv_log(self) -> Path:
        return self.folder / CSV_LOG

    @property
    def extra_state(self) -> Path:
        return self.folder / EXTRA_STATE

    def finished_epochs(self) -> int:
        """Epochs the backup holds (0: nothing to resume)."""
        metadata = self.backup_dir / "training_metadata.json"
        if not metadata.exists():
            return 0
        return int(json.loads(metadata.read_text())["epoch"])

    def _stored(self) -> dict[str, Any]:
        path = self.folder / FINGERPRINT
        return json.loads(path.read_text()) if path.exists() else {}

    def prepare(self, resume: bool, run_id: str) -> tuple[int, str | None]:
        """Make the folder ready; return (epochs already done, the interrupted run's id).

        The CSV log is cut to the epochs the backup holds: an epoch that was
        logged but not backed up runs again.
        """
        stored = self._stored()
        epochs = self.finished_epochs() if stored.get("fingerprint") == self.fingerprint else 0
        if not resume or epochs == 0:
            shutil.rmtree(self.folder, ignore_errors=True)
            epochs, previous_run = 0, None
        else:
            previous_run = stored.get("run_id")
            history = self.history()
            history[history["epoch"] < epochs].to_csv(self.csv_log, index=False)
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / FINGERPRINT).write_text(
            json.dumps({"fingerprint": self.fingerprint, "run_id": run_id})
        )
        return epochs, previous_run

    def history(self) -> pd.DataFrame:
        """The CSV log as Keras wrote it (epoch counted from 0)."""
        if not self.csv_log.exists() or self.csv_log.stat().st_size == 0:
            return pd.DataFrame({"epoch": pd.Series(dtype=int)})
        return pd.read_csv(self.csv_log)

    def clear(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
