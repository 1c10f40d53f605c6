"""Our callbacks on a real (tiny) fit: the cosine schedule and its composition with
ReduceLROnPlateau, and the record of what ReduceLROnPlateau did."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from captcha_ocr.callbacks import (
    CosineSchedule,
    EpochStats,
    ExtraStateBackup,
    RecordedReduceLROnPlateau,
)


def test_cosine_warms_up_then_decays_to_one_percent():
    schedule = CosineSchedule(peak=0.01, total_steps=110, warmup_steps=10)
    assert schedule.rate(0) == pytest.approx(0.001)
    assert schedule.rate(9) == pytest.approx(0.01)
    assert schedule.rate(60) == pytest.approx(0.01 * (0.01 + 0.99 * 0.5))
    assert schedule.rate(110) == pytest.approx(0.0001)
    assert schedule.rate(500) == pytest.approx(0.0001)


def tiny_fit(callbacks, epochs=4):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    model.compile(keras.optimizers.SGD(0.1), "mse")
    x = np.random.default_rng(0).random((40, 3), dtype=np.float32)
    y = np.random.default_rng(1).random((40, 1), dtype=np.float32)
    return model.fit(
        x, y, batch_size=10, epochs=epochs, validation_data=(x, y), verbose=0, callbacks=callbacks
    )


def test_cosine_composes_with_reduce_lr_on_plateau():
    # Given a schedule over 4 epochs of 4 steps, and a ReduceLROnPlateau that
    # fires after every epoch but the first (an improvement of 1000 is never
    # reached; the first epoch improves on nothing)
    schedule = CosineSchedule(peak=0.1, total_steps=16)
    reduce = RecordedReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=0, min_delta=1000)
    history = tiny_fit([schedule, EpochStats(40), reduce])
    rates = history.history["learning_rate"]
    assert [r["after_epoch"] for r in reduce.reductions] == [2, 3, 4]
    # Then each epoch runs at the schedule's rate times the reductions before it
    for epoch, rate in enumerate(rates):
        last_step = 4 * epoch + 3
        earlier = sum(r["after_epoch"] <= epoch for r in reduce.reductions)
        assert rate == pytest.approx(schedule.rate(last_step) * 0.5**earlier, rel=1e-4), epoch
    assert reduce.reductions[0]["to"] == pytest.approx(reduce.reductions[0]["from"] * 0.5)


def test_a_resumed_fit_keeps_earlier_reductions_in_its_rate_and_its_record(tmp_path):
    # Given a run of 4 epochs of 4 steps whose ReduceLROnPlateau halved the rate
    # after epoch 2, interrupted then, with its state in BackupAndRestore
    def callbacks(resume_after):
        reduce = RecordedReduceLROnPlateau(
            monitor="val_loss", factor=0.5, patience=0, min_delta=1000
        )
        return [
            CosineSchedule(peak=0.1, total_steps=16),
            EpochStats(40),
            reduce,
            ExtraStateBackup(tmp_path / "extra.json", resume_after, reduce),
            keras.callbacks.BackupAndRestore(str(tmp_path / "backup"), delete_checkpoint=False),
        ]

    first = callbacks(resume_after=0)
    tiny_fit(first, epochs=2)
    assert [r["after_epoch"] for r in first[2].reductions] == [2]
    # When a new process (new model, callbacks and schedule) resumes it
    second = callbacks(resume_after=2)
    resumed = tiny_fit(second, epochs=4)
    # Then epoch 3 runs at the schedule's rate with the halving kept
    assert len(resumed.history["learning_rate"]) == 2
    assert resumed.history["learning_rate"][0] == pytest.approx(first[0].rate(11) * 0.5, rel=1e-4)
    # and the record holds the halving before the resume and the one after epoch 4
    # (epoch 3 improves on nothing: without ResumeState its best starts afresh)
    assert [r["after_epoch"] for r in second[2].reductions] == [2, 4]
