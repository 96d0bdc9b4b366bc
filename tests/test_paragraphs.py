"""Paragraph ids: shown as typed, compared normalised, sorted in decree order."""
import pytest

from tracker.services.paragraphs import display_id, id_key, sort_key


@pytest.mark.parametrize("typed, shown", [
    ("131(d)", "¶ 131(d)"),
    ("  ¶ 131(d) ", "¶ 131(d)"),
    ("¶¶ 61–63", "¶¶ 61–63"),
    ("§ III.C ¶ 47", "§ III.C ¶ 47"),
    ("Para. 17", "Para. 17"),
    ("61-63", "61-63"),
    ("47A", "¶ 47A"),
    ("CIT-004", "CIT-004"),
])
def test_display_keeps_the_id_as_typed_and_never_adds_a_second_sign(typed, shown):
    assert display_id(typed) == shown


@pytest.mark.parametrize("a, b", [("¶ 47", "47"), ("Para. 47", "47"), ("¶¶ 61–63", "61-63"), ("¶ 131 (d)", "131(D)")])
def test_same_paragraph_same_key(a, b):
    assert id_key(a) == id_key(b)


def test_different_paragraphs_differ():
    assert id_key("§ III.C ¶ 47") != id_key("47")
    assert id_key("131(a)") != id_key("131(b)")


def test_decree_order():
    typed = ["¶ 131(b)", "¶¶ 61–63", "¶ 10", "¶ 131(a)", "9", "§ III.C ¶ 47"]
    assert sorted(typed, key=sort_key) == ["9", "¶ 10", "§ III.C ¶ 47", "¶¶ 61–63", "¶ 131(a)", "¶ 131(b)"]


def test_roman_section_numbers_sort_by_value():
    labels = ["IX.A Data", "IV.B Crisis Intervention", "V.A Training", "IV.C Policy"]
    assert sorted(labels, key=sort_key) == ["IV.B Crisis Intervention", "IV.C Policy", "V.A Training", "IX.A Data"]
