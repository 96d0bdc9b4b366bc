"""Input edges that used to answer 500 (issue 19 §3), refused in one place before any view runs.

- Ids in a path beyond the database's INTEGER (2**31 - 1): the `int` converter refuses them, so the route
  does not match and the answer is the same 404 as any missing row.
- Ids and page numbers in a query string or a form (`page`, `per_page`, `id`, `*_id`, `*_ids`): a number
  beyond that range is a 400 naming the field (the read API bounds its page and per_page itself).
- Dates typed into any form or query field (YYYY-MM-DD, or a datetime-local value) outside 1900-2200: a 400
  naming the field and the range. Nothing later has to do arithmetic on year 9999.
"""
import re

from flask import request
from werkzeug.exceptions import BadRequest
from werkzeug.routing import IntegerConverter

INT_MAX = 2**31 - 1
MIN_YEAR, MAX_YEAR = 1900, 2200
_NUMBER_FIELD = re.compile(r"(?:^|_)(?:id|ids|page|per_page)$")
# Ids that are not row numbers: a form's one-time id is hex (services/submissions.py FIELD), digits or not.
TEXT_IDS = {"submission_id"}
_INTEGER = re.compile(r"[+-]?\d+")
_DATE = re.compile(r"([+-]?\d{4,})-(\d{1,2})-(\d{1,2})(?:[T ]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?")


class BoundedInt(IntegerConverter):
    """<int:...> path parts that fit an INTEGER column; anything larger matches no route (404)."""

    def __init__(self, map, fixed_digits=0, min=None, max=INT_MAX, signed=False):  # noqa: A002 - werkzeug's names
        super().__init__(map, fixed_digits=fixed_digits, min=min, max=max, signed=signed)


class BadInput(BadRequest):
    """A value no field accepts; the message names the field."""


def _too_big(text):
    digits = text.lstrip("+-")
    return len(digits) > 10 or int(digits) > INT_MAX


def problem(name, value):
    """Why this field's value is refused before any view sees it, or None."""
    text = value.strip()
    if name not in TEXT_IDS and _NUMBER_FIELD.search(name) and _INTEGER.fullmatch(text) and _too_big(text):
        return f"{name}: {text[:24]}{'…' if len(text) > 24 else ''} is not a number this tracker uses " \
               f"(whole numbers up to {INT_MAX:,})."
    match = _DATE.fullmatch(text)
    if match and not MIN_YEAR <= int(match.group(1)) <= MAX_YEAR:
        return f"{name}: {text[:30]} is outside the dates this tracker accepts ({MIN_YEAR}-01-01 to {MAX_YEAR}-12-31)."
    return None


def check_request():
    """before_request: refuse the request when a query or form field holds such a value. The read API checks
    its own two query fields (page, per_page) and answers in its own JSON."""
    if request.blueprint == "api":
        return
    for values in (request.args, request.form):
        for name, value in values.items(multi=True):
            found = problem(name, value)
            if found:
                raise BadInput(found)


def _answer(e):
    from tracker.views.errors import _render

    return _render(400, e.description)


def init_app(app):
    """Before any blueprint is registered: its rules take the converter when they are added."""
    app.url_map.converters["int"] = BoundedInt
    app.before_request(check_request)
    app.register_error_handler(BadInput, _answer)
