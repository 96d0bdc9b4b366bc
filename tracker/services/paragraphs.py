"""Paragraph ids as decrees write them: shown as typed, compared on a normalised form, sorted as a reader expects.

"¶ 47", "47" and "Para. 47" are the same paragraph; "¶ 9" comes before "¶ 10", "¶¶ 61–63" and "¶ 131(a)".
"""
import re

DASHES = re.compile(r"[\u2010-\u2015\u2212]")  # hyphen, non-breaking hyphen, figure/en/em dash, minus sign
# A leading paragraph sign or word: "¶", "¶¶", "Para.", "Paras.", "Paragraph", "Paragraphs".
PARAGRAPH_PREFIX = re.compile(r"^(?:¶+|paras?\.?|paragraphs?)\s*", re.IGNORECASE)
BARE_NUMBER = re.compile(r"^\d+[A-Za-z]?(?:\s*\([A-Za-z0-9]+\))*$")
ROMAN = re.compile(r"^(?=[ivxlc]+$)c{0,3}(xc|xl|l?x{0,3})(ix|iv|v?i{0,3})$")
_RUNS = re.compile(r"(\d+)")
_ROMAN_VALUES = {"i": 1, "v": 5, "x": 10, "l": 50, "c": 100}


def display_id(typed):
    """The id as typed (surrounding whitespace trimmed); a bare number such as 131(d) gets one ¶ sign."""
    text = " ".join((typed or "").split())
    if BARE_NUMBER.match(text):
        return f"¶ {text}"
    return text


def id_key(typed):
    """Normalised form for uniqueness: case, spacing, dash style and a leading ¶/Para. don't matter."""
    text = DASHES.sub("-", (typed or "").strip().lower())
    text = PARAGRAPH_PREFIX.sub("", text)
    return re.sub(r"\s+", "", text)


def _roman_value(token):
    total, previous = 0, 0
    for char in reversed(token):
        value = _ROMAN_VALUES[char]
        total = total - value if value < previous else total + value
        previous = max(previous, value)
    return total


def sort_key(typed):
    """A string that sorts ids in decree order: numbers by value, a leading Roman section number by value.

    "§ III.C ¶ 47" sorts as paragraph 47 (paragraph numbers run through a whole decree), its section second.
    """
    text = id_key(typed)
    section, sign, paragraph = text.rpartition("¶")
    if sign and paragraph:
        text = f"{paragraph}~{section}"
    text = text.replace("§", "")
    first, dot, rest = text.partition(".")
    if dot and ROMAN.match(first):
        text = f"{_roman_value(first)}.{rest}"
    return _RUNS.sub(lambda m: f"{int(m.group(1)):010d}", text)[:400]
