"""Scores on hand-made predictions with known answers."""

from __future__ import annotations

import pytest

from captcha_ocr.metrics import MISSING, align, evaluate_texts


def test_align_equal_lengths_position_by_position():
    assert align("AB0C", "AB0C") == [("A", "A"), ("B", "B"), ("0", "0"), ("C", "C")]
    assert align("A0C", "AOC") == [("A", "A"), ("0", "O"), ("C", "C")]


def test_align_a_dropped_doubled_character_is_one_deletion():
    # "AABC" read as "ABC": one deletion, not three substitutions.
    pairs = align("AABC", "ABC")
    assert sum(t != p for t, p in pairs) == 1
    assert (("A", MISSING) in pairs) and pairs[-2:] == [("B", "B"), ("C", "C")]


def test_doubled_accuracy_scores_captchas_with_a_character_next_to_its_copy():
    truths = ["AAB", "ABA", "CCD", "CCD", "XYZ"]
    predictions = ["AAB", "AB", "CD", "CCD", "XY"]
    summary = evaluate_texts(truths, predictions).summary
    # AAB and the two CCD are doubled; ABA repeats A but not side by side
    assert summary["n_doubled"] == 3
    assert summary["doubled_accuracy"] == pytest.approx(2 / 3)


def test_align_insertion():
    assert align("AB", "AXB") == [("A", "A"), (MISSING, "X"), ("B", "B")]


def test_scores_on_known_answers():
    truths = ["AB0C", "0000", "XYZW", "AABC"]
    predictions = ["AB0C", "O000", "XYZW", "ABC"]
    result = evaluate_texts(truths, predictions, [0.9, 0.4, 0.8, 0.3], charset="0ABCOWXYZ")
    summary = result.summary
    assert summary["sequence_accuracy"] == 0.5
    # 16 true characters, 2 misread (0 as O, one A dropped)
    assert summary["character_accuracy"] == pytest.approx(14 / 16)
    assert summary["character_error_rate"] == pytest.approx(2 / 16)
    assert summary["length_accuracy"] == 0.75
    assert summary["n_test"] == 4 and summary["n_wrong"] == 2
    assert summary["n_doubled"] == 2 and summary["doubled_accuracy"] == 0.0
    assert summary["mean_confidence_correct"] == pytest.approx(0.85)
    assert summary["mean_confidence_wrong"] == pytest.approx(0.35)
    errors = result.per_char["errors"].to_dict()
    assert errors["0"] == 1 and errors["A"] == 1 and errors["B"] == 0
    assert errors["O"] == 0  # in the charset, never a true character: listed with no errors
    assert result.per_char.loc["0", "occurrences"] == 5
    confusions = {(row.actual, row.predicted): row.count for row in result.confusions.itertuples()}
    assert confusions == {("0", "O"): 1, ("A", MISSING): 1}


def test_mismatched_lengths_are_refused():
    with pytest.raises(ValueError, match="2 truths but 1 predictions"):
        evaluate_texts(["A", "B"], ["A"])


def test_mixed_sources_are_scored_each_on_its_own():
    # Given three generated captchas, all read, and two imported ones, one read
    truths = ["AB12", "CD34", "EF56", "GH78", "JK90"]
    predictions = ["AB12", "CD34", "EF56", "GH78", "JK9O"]
    sources = ["generated", "generated", "generated", "imported", "imported"]
    summary = evaluate_texts(truths, predictions, sources=sources).summary
    # Then each source has its count and whole-captcha accuracy beside the overall one
    assert summary["sequence_accuracy"] == pytest.approx(4 / 5)
    assert (summary["n_generated"], summary["generated_sequence_accuracy"]) == (3, 1.0)
    assert (summary["n_imported"], summary["imported_sequence_accuracy"]) == (2, 0.5)
    # and one source alone adds nothing: its figures are the overall ones
    alone = evaluate_texts(truths, predictions, sources=["generated"] * 5).summary
    assert "n_generated" not in alone and "generated_sequence_accuracy" not in alone
