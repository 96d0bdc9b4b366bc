"""Deadlines and recurring duties as decrees word them.

`parse(value)` reads one spreadsheet cell and returns a `Deadline`, or raises `DeadlineError` with a message
that quotes the text and gives examples. Accepted (case-insensitive, with or without "the", any dash):

- relative to the instrument's effective date: "within 45 days of the Effective Date", "no later than 150 days
  after the Effective Date", "60 days after the Effective Date", "within one year of the Effective Date",
  "6 months", "2 years", "ninety (90) days" (number words one to nine hundred ninety-nine);
- a date: "2020-12-31", "12/31/2020", "December 31, 2020", "Dec. 31, 2020", "31 December 2020", optionally
  after "by", "on or before", "no later than"; an Excel date cell (a date object);
- a recurring duty: "annually", "each year", "semiannually", "every six months", "twice a year", "quarterly",
  "monthly", "every 18 months", "every two years", "at least every three years", optionally with a start —
  "annually, beginning 12 months after the Effective Date", "quarterly starting March 31, 2021" — or written
  first-deadline-then-cadence: "within 180 days of the Effective Date and annually thereafter".

A recurring duty without a start is first due one interval after the effective date.
"""
import re
from dataclasses import dataclass
from datetime import date, datetime

from tracker.models.catalog import CADENCE_MONTHS

EXAMPLES = ("'within 180 days of the Effective Date', '6 months', 'December 31, 2020', '2020-12-31', "
            "'annually', 'every six months', 'quarterly, beginning 90 days after the Effective Date'")

_UNITS = {"zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
          "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
          "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19}
_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80,
         "ninety": 90}
_NUMBER_WORD = "(?:" + "|".join(sorted([*_UNITS, *_TENS, "hundred", "and", "a", "an"], key=len, reverse=True)) + ")"
NUMBER = rf"(?:\d{{1,4}}|{_NUMBER_WORD}(?:[\s-]+{_NUMBER_WORD})*)"
MONTHS = {name: i for i, names in enumerate((
    ("january", "jan"), ("february", "feb"), ("march", "mar"), ("april", "apr"), ("may",), ("june", "jun"),
    ("july", "jul"), ("august", "aug"), ("september", "sep", "sept"), ("october", "oct"), ("november", "nov"),
    ("december", "dec")), start=1) for name in names}
_MONTH = "(?:" + "|".join(sorted(MONTHS, key=len, reverse=True)) + r")\.?"

_DASHES = re.compile(r"[\u2010-\u2015\u2212]")
_BY = r"(?:(?:by|before|on or before|no later than|not later than|on)\s+)?"
_RELATIVE = re.compile(
    rf"^(?:(?:within|no later than|not later than|by|in)\s+)?(?P<n>{NUMBER})\s+"
    r"(?P<unit>days?|weeks?|months?|years?)"
    r"(?:\s+(?:of|after|from|following)\s+(?:the\s+)?effective\s+date)?$")
_ISO = re.compile(rf"^{_BY}(\d{{4}})-(\d{{1,2}})-(\d{{1,2}})(?:[ t]00:00(?::00)?)?$")
_US = re.compile(rf"^{_BY}(\d{{1,2}})/(\d{{1,2}})/(\d{{4}})$")
_MDY = re.compile(rf"^{_BY}(?P<month>{_MONTH})\s+(?P<day>\d{{1,2}})(?:st|nd|rd|th)?,?\s+(?P<year>\d{{4}})$")
_DMY = re.compile(rf"^{_BY}(?P<day>\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?(?P<month>{_MONTH}),?\s+(?P<year>\d{{4}})$")
_CADENCE_WORDS = [
    (r"(?:annually|annual|yearly|each year|every year|once (?:a|per|each) year|per year)", 12),
    (r"(?:semi-?annually|semi-?annual|twice (?:a|per|each) year|twice yearly|biannually|each half[- ]year)", 6),
    (r"(?:quarterly|every quarter|each quarter|once (?:a|per|each) quarter)", 3),
    (r"(?:monthly|every month|each month|once (?:a|per|each) month)", 1),
    (r"(?:biennially|every other year)", 24),
]
_EVERY = re.compile(rf"^every\s+(?P<n>{NUMBER})\s+(?P<unit>months?|years?)$")
_START = re.compile(r"^(?P<cadence>.+?),?\s+(?:beginning|starting|commencing|first due)\s+(?P<start>.+)$")
_THEREAFTER = re.compile(r"^(?P<start>.+?),?\s+and\s+(?P<cadence>.+?)\s+thereafter$")


class DeadlineError(ValueError):
    pass


@dataclass(frozen=True)
class Deadline:
    """What a cell says. `amount`/`unit` ("days" or "months") count from the effective date; `on` is a fixed
    date; `cadence_months` makes it recurring (the start is then `amount`/`unit` or `on`)."""

    text: str = ""
    amount: int | None = None
    unit: str | None = None
    on: date | None = None
    cadence_months: int | None = None

    @property
    def blank(self):
        return self.amount is None and self.on is None and self.cadence_months is None

    @property
    def relative(self):
        return self.amount is not None


def _clean(text):
    text = _DASHES.sub("-", text).replace("\u00a0", " ").lower()
    text = re.sub(r"\s+", " ", text).strip().rstrip(".;").strip()
    # "ninety (90) days": the digits in brackets win over the words before them.
    text = re.sub(rf"\b{NUMBER}\s*\((\d{{1,4}})\)", r"\1", text)
    return text


def number(text):
    """'45' -> 45, 'one' -> 1, 'twenty-four' -> 24, 'one hundred eighty' -> 180, 'a' -> 1; None otherwise."""
    text = text.strip()
    if text.isdigit():
        return int(text)
    total, current = 0, 0
    for word in re.split(r"[\s-]+", text):
        if word in ("a", "an"):
            current += 1
        elif word in _UNITS:
            current += _UNITS[word]
        elif word in _TENS:
            current += _TENS[word]
        elif word == "hundred":
            current = max(current, 1) * 100
        elif word != "and":
            return None
    total += current
    return total


def _offset(n_text, unit):
    n = number(n_text)
    if n is None or n <= 0 or n > 9999:
        return None
    unit = unit.rstrip("s")
    if unit == "year":
        return n * 12, "months"
    if unit == "week":
        return n * 7, "days"
    return n, f"{unit}s"


def _date(text):
    for pattern, order in ((_ISO, "ymd"), (_US, "mdy")):
        match = pattern.match(text)
        if match:
            values = dict(zip(order, (int(g) for g in match.groups()), strict=True))
            return _make_date(values["y"], values["m"], values["d"], text)
    for pattern in (_MDY, _DMY):
        match = pattern.match(text)
        if match:
            month = MONTHS[match.group("month").rstrip(".")]
            return _make_date(int(match.group("year")), month, int(match.group("day")), text)
    return None


def _make_date(year, month, day, text):
    try:
        return date(year, month, day)
    except ValueError:
        raise DeadlineError(f"'{text}' is not a real date (check the day and month)") from None


def _cadence(text):
    text = re.sub(r"^(?:at least|no less (?:often )?than|not less (?:often )?than)\s+", "", text)
    for pattern, months in _CADENCE_WORDS:
        if re.fullmatch(pattern, text):
            return months
    match = _EVERY.match(text)
    if match:
        offset = _offset(match.group("n"), match.group("unit"))
        if offset and offset[0] <= 120:
            return offset[0]
    return None


def _once(text):
    """A one-off deadline: (amount, unit, on) or None."""
    match = _RELATIVE.match(text)
    if match:
        offset = _offset(match.group("n"), match.group("unit"))
        if offset:
            return offset[0], offset[1], None
    on = _date(text)
    if on is not None:
        return None, None, on
    return None


def parse(value):
    """A cell (text, date or datetime) -> Deadline; blank -> Deadline(); not understood -> DeadlineError."""
    if value is None:
        return Deadline()
    if isinstance(value, datetime):
        return Deadline(text=value.date().isoformat(), on=value.date())
    if isinstance(value, date):
        return Deadline(text=value.isoformat(), on=value)
    original = " ".join(str(value).split())
    if not original:
        return Deadline()
    text = _clean(original)
    once = _once(text)
    if once is not None:
        return Deadline(original, *once)
    months = _cadence(text)
    if months is not None:
        return Deadline(original, cadence_months=months)
    for pattern in (_START, _THEREAFTER):
        match = pattern.match(text)
        if match:
            months, start = _cadence(match.group("cadence")), _once(match.group("start"))
            if months is not None and start is not None:
                return Deadline(original, *start, cadence_months=months)
    raise DeadlineError(f"'{original}' is not a deadline we understand; write it like {EXAMPLES}")


CADENCE_NAMES = {1: "monthly", 3: "quarterly", 6: "semiannually", 12: "annually", 24: "every two years",
                 36: "every three years"}


def cadence_label(months):
    """12 -> 'annually', 18 -> 'every 18 months'; None -> ''."""
    if months is None:
        return ""
    return CADENCE_NAMES.get(months) or (f"every {months // 12} years" if months % 12 == 0
                                         else f"every {months} months")


def catalog_cadence(key):
    """The catalog's cadence words ('annual', 'quarterly', …) in the same model: months between occurrences."""
    return CADENCE_MONTHS.get(key) if key else None
