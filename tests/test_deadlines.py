"""Deadlines and recurring duties as decrees word them (issue 12, item 1)."""
from datetime import date, datetime

import pytest

from tracker.services.deadlines import Deadline, DeadlineError, cadence_label, catalog_cadence, number, parse


@pytest.mark.parametrize("text, amount, unit", [
    ("within 45 days of the Effective Date", 45, "days"),
    ("Within 45 days of Effective Date", 45, "days"),
    ("WITHIN 45 DAYS OF THE EFFECTIVE DATE.", 45, "days"),
    ("no later than 150 days after the Effective Date", 150, "days"),
    ("not later than 150 days after the effective date", 150, "days"),
    ("60 days after the Effective Date", 60, "days"),
    ("60 days following the effective date", 60, "days"),
    ("within one year of the Effective Date", 12, "months"),
    ("within a year of the Effective Date", 12, "months"),
    ("within twenty-four months of the Effective Date", 24, "months"),
    ("within twenty\u2013four months of the Effective Date", 24, "months"),   # en dash
    ("within twelve months of the effective date", 12, "months"),
    ("within ninety (90) days of the Effective Date", 90, "days"),
    ("within one hundred eighty days of the Effective Date", 180, "days"),
    ("6 months", 6, "months"),
    ("2 years", 24, "months"),
    ("180 days", 180, "days"),
    ("1 day", 1, "days"),
    ("two weeks", 14, "days"),
    ("  12   months ", 12, "months"),
])
def test_relative_deadlines(text, amount, unit):
    d = parse(text)
    assert (d.amount, d.unit, d.on, d.cadence_months) == (amount, unit, None, None)
    assert d.relative and not d.blank
    assert d.text == " ".join(text.split())


@pytest.mark.parametrize("word, value", [
    ("one", 1), ("two", 2), ("three", 3), ("four", 4), ("five", 5), ("six", 6), ("seven", 7), ("eight", 8),
    ("nine", 9), ("ten", 10), ("eleven", 11), ("twelve", 12), ("thirteen", 13), ("fourteen", 14),
    ("fifteen", 15), ("sixteen", 16), ("seventeen", 17), ("eighteen", 18), ("nineteen", 19), ("twenty", 20),
    ("twenty-one", 21), ("twenty two", 22), ("twenty-three", 23), ("twenty-four", 24),
])
def test_number_words_one_to_twenty_four(word, value):
    assert number(word) == value
    assert parse(f"within {word} months of the Effective Date").amount == value


@pytest.mark.parametrize("text, on", [
    ("2020-12-31", date(2020, 12, 31)),
    ("2020-12-31 00:00:00", date(2020, 12, 31)),
    ("12/31/2020", date(2020, 12, 31)),
    ("1/5/2021", date(2021, 1, 5)),
    ("December 31, 2020", date(2020, 12, 31)),
    ("december 31 2020", date(2020, 12, 31)),
    ("Dec. 31, 2020", date(2020, 12, 31)),
    ("Sept 1, 2021", date(2021, 9, 1)),
    ("31 December 2020", date(2020, 12, 31)),
    ("31st of December, 2020", date(2020, 12, 31)),
    ("by December 31, 2020", date(2020, 12, 31)),
    ("no later than December 31, 2020", date(2020, 12, 31)),
    ("on or before 12/31/2020", date(2020, 12, 31)),
    ("By 2020-12-31", date(2020, 12, 31)),
])
def test_absolute_dates(text, on):
    d = parse(text)
    assert (d.on, d.amount, d.cadence_months) == (on, None, None)


def test_excel_date_cells():
    assert parse(datetime(2020, 12, 31, 0, 0)) == Deadline(text="2020-12-31", on=date(2020, 12, 31))
    assert parse(date(2021, 3, 1)).on == date(2021, 3, 1)


@pytest.mark.parametrize("text, months", [
    ("annually", 12), ("Annually", 12), ("annual", 12), ("each year", 12), ("every year", 12), ("yearly", 12),
    ("once a year", 12), ("at least annually", 12),
    ("semiannually", 6), ("semi-annually", 6), ("semi\u2011annually", 6), ("every six months", 6),
    ("twice a year", 6), ("twice per year", 6),
    ("quarterly", 3), ("every quarter", 3), ("every three months", 3),
    ("monthly", 1), ("every month", 1),
    ("every 18 months", 18), ("every two years", 24), ("biennially", 24),
    ("at least every three years", 36), ("At least every 3 years", 36),
])
def test_recurring_duties(text, months):
    d = parse(text)
    assert (d.cadence_months, d.amount, d.on) == (months, None, None)


@pytest.mark.parametrize("text, months, amount, unit, on", [
    ("annually, beginning 12 months after the Effective Date", 12, 12, "months", None),
    ("Annually beginning twelve months after the effective date", 12, 12, "months", None),
    ("quarterly, starting March 31, 2021", 3, None, None, date(2021, 3, 31)),
    ("semiannually, beginning within 180 days of the Effective Date", 6, 180, "days", None),
    ("every six months, commencing 2021-06-30", 6, None, None, date(2021, 6, 30)),
    ("within 180 days of the Effective Date and annually thereafter", 12, 180, "days", None),
    ("by December 31, 2020, and quarterly thereafter", 3, None, None, date(2020, 12, 31)),
])
def test_recurring_with_a_start(text, months, amount, unit, on):
    d = parse(text)
    assert (d.cadence_months, d.amount, d.unit, d.on) == (months, amount, unit, on)


@pytest.mark.parametrize("blank", [None, "", "   ", "\n"])
def test_blank_means_no_deadline(blank):
    assert parse(blank).blank


@pytest.mark.parametrize("text", [
    "soon", "12 weeks or so", "31/12/2020", "2020-02-30", "within 0 days of the Effective Date",
    "every now and then", "annually, beginning whenever", "the Effective Date", "December 2020",
    "within 45 days of the Monitor's report",
])
def test_not_understood_is_an_error_with_examples(text):
    with pytest.raises(DeadlineError) as exc:
        parse(text)
    message = str(exc.value)
    assert f"'{' '.join(text.split())}'" in message
    if "2020-02-30" in text or "31/12/2020" in text:
        assert "not a real date" in message or "not a deadline" in message
    else:
        assert "within 180 days of the Effective Date" in message and "annually" in message


def test_cadence_labels_and_the_catalog_uses_the_same_months():
    assert [cadence_label(m) for m in (None, 1, 3, 6, 12, 18, 36)] == [
        "", "monthly", "quarterly", "semiannually", "annually", "every 18 months", "every three years"]
    assert catalog_cadence("annual") == 12 and catalog_cadence("semiannual") == 6
    assert catalog_cadence("quarterly") == 3 and catalog_cadence(None) is None
