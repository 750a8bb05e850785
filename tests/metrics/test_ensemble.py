"""metrics.ensemble: members' image probabilities averaged image by image, aligned by path."""

from __future__ import annotations

import pandas as pd
import pytest

from muracli.errors import DataError
from muracli.metrics.ensemble import mean_probabilities


def table(rows):
    return pd.DataFrame(rows, columns=["path", "study", "probability"])


def test_members_are_aligned_by_path_not_by_position():
    first = table([("a.png", "s1", 0.2), ("b.png", "s1", 0.4), ("c.png", "s2", 0.9)])
    second = table([("c.png", "s2", 0.5), ("a.png", "s1", 0.6), ("b.png", "s1", 0.0)])
    mean = mean_probabilities([first, second])
    assert list(mean["path"]) == ["a.png", "b.png", "c.png"]  # the first member's order
    assert list(mean["study"]) == ["s1", "s1", "s2"]
    assert mean["probability"].tolist() == pytest.approx([0.4, 0.2, 0.7])
    assert first["probability"].tolist() == [0.2, 0.4, 0.9]  # the members' tables are left alone


def test_a_member_with_itself_is_the_member_exactly():
    first = table([("a.png", "s1", 0.123456789), ("b.png", "s1", 0.987654321)])
    assert mean_probabilities([first, first.copy()])["probability"].tolist() == first["probability"].tolist()


def test_members_of_different_images_are_an_error_that_says_how():
    first = table([("a.png", "s1", 0.2), ("b.png", "s1", 0.4)])
    second = table([("a.png", "s1", 0.3), ("z.png", "s9", 0.1)])
    with pytest.raises(DataError) as info:
        mean_probabilities([first, second], names=["run-a", "run-b"])
    assert "1 only in run-a (e.g. b.png)" in info.value.message
    assert "1 only in run-b (e.g. z.png)" in info.value.message
    assert "--body-part" in info.value.hint
    with pytest.raises(DataError, match="twice"):
        mean_probabilities([table([("a.png", "s1", 0.2), ("a.png", "s1", 0.4)])])
