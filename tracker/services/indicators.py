"""Outcome indicators (issue 14 §3): an agency's numbers with targets, per month or quarter.

An agency defines its own indicators or adopts ones the catalog suggests (CatalogIndicator, module
"data"). A value belongs to one period (the first day of its month or quarter) and one breakdown
("" is the overall figure; "District 3", "Night shift"… are parts). When a numerator and a denominator
are given the value is computed from them: percent = 100 × n / d, rate per 1,000 = 1,000 × n / d.

Reads for the pages (summaries, the chart's geometry) take a fixed number of queries whatever the
number of indicators or values.
"""
import functools
import re
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

import sqlalchemy as sa

from tracker.extensions import db
from tracker.models import (
    DIRECTIONS,
    FREQUENCIES,
    INDICATOR_UNITS,
    CatalogIndicator,
    Indicator,
    IndicatorValue,
    Requirement,
)
from tracker.models.indicators import indicator_requirement
from tracker.services import audit
from tracker.services.errors import ValidationFailed

KEY_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
MONTH_RE = re.compile(r"^(\d{4})-(\d{1,2})(?:-01)?$")
QUARTER_RE = re.compile(r"^(\d{4})\s*-?\s*Q([1-4])$|^Q([1-4])\s*-?\s*(\d{4})$", re.IGNORECASE)
SCALE = {"percent": Decimal(100), "rate": Decimal(1000)}
SUFFIX = {"percent": "%", "minutes": " min", "rate": " per 1,000", "count": ""}
MAX_VALUE = Decimal(10) ** 9
FOUR_PLACES = Decimal("0.0001")
EDIT_FIELDS = ("name", "definition", "numerator", "denominator", "unit", "direction", "frequency",
               "target_value", "target_date")


# --- periods and numbers ------------------------------------------------------------------------------

def parse_period(text, frequency):
    """'2025-03' (a month) or '2025-Q1' (a quarter) -> the period's first day. Raises ValueError with a
    message naming what was expected; a month for a quarterly indicator (or the reverse) is refused."""
    text = (text or "").strip()
    quarter = QUARTER_RE.match(text)
    month = MONTH_RE.match(text)
    if quarter:
        year, q = (int(quarter.group(1)), int(quarter.group(2))) if quarter.group(1) else \
            (int(quarter.group(4)), int(quarter.group(3)))
        if frequency == "month":
            raise ValueError(f"'{text}' is a quarter but this indicator is monthly (write a month like 2025-03)")
        start = date(year, 3 * q - 2, 1)
    elif month and 1 <= int(month.group(2)) <= 12:
        start = date(int(month.group(1)), int(month.group(2)), 1)
        if frequency == "quarter":
            raise ValueError(f"'{text}' is a month but this indicator is quarterly (write a quarter like 2025-Q1)")
    else:
        raise ValueError(f"'{text}' is not a period like 2025-03 (month) or 2025-Q1 (quarter)")
    if not 1900 < start.year < 2200:
        raise ValueError(f"'{text}' is not a plausible year")
    return start


def period_label(start, frequency):
    """The period as written in imports and exports: 2025-Q1 or 2025-03."""
    if frequency == "quarter":
        return f"{start.year}-Q{(start.month - 1) // 3 + 1}"
    return f"{start.year}-{start.month:02d}"


def period_name(start, frequency):
    """The period for readers: 'Q1 2025' or 'Mar 2025'."""
    if frequency == "quarter":
        return f"Q{(start.month - 1) // 3 + 1} {start.year}"
    return start.strftime("%b %Y")


def to_decimal(text, what):
    """A number from a form or a file cell ('1,234.5' and ' 12 ' too); ValueError names `what`."""
    if isinstance(text, int | float | Decimal):
        text = str(text)
    cleaned = (text or "").strip().replace(",", "")
    try:
        number = Decimal(cleaned)
    except InvalidOperation:
        raise ValueError(f"{what} '{text}' is not a number") from None
    if not number.is_finite() or abs(number) >= MAX_VALUE:
        raise ValueError(f"{what} '{text}' is not a number below one billion")
    return number


def compute(unit, numerator, denominator):
    if denominator == 0:
        raise ValueError("the denominator is 0")
    return numerator * SCALE.get(unit, Decimal(1)) / denominator


def check_value(unit, value):
    """Refuse what no indicator can be: a negative value, a percent over 100."""
    if value < 0:
        raise ValueError(f"{_plain(value)} is negative")
    if unit == "percent" and value > 100:
        raise ValueError(f"{_plain(value)} is over 100%")
    return value.quantize(FOUR_PLACES, rounding=ROUND_HALF_UP)


def resolve_value(unit, value_text, numerator_text, denominator_text):
    """(value, numerator, denominator) from what was typed: a value, or a numerator and a denominator
    (a value given beside them must agree to two decimals). Raises ValueError."""
    has_value = bool((value_text or "").strip()) if isinstance(value_text, str) else value_text is not None
    num_given = bool(str(numerator_text or "").strip())
    den_given = bool(str(denominator_text or "").strip())
    if num_given != den_given:
        raise ValueError("give both the numerator and the denominator, or neither")
    if num_given:
        numerator, denominator = to_decimal(numerator_text, "numerator"), to_decimal(denominator_text, "denominator")
        if numerator < 0 or denominator < 0:
            raise ValueError("the numerator and the denominator cannot be negative")
        value = check_value(unit, compute(unit, numerator, denominator))
        if has_value and abs(to_decimal(value_text, "value") - value) > Decimal("0.005"):
            raise ValueError(f"value {value_text} does not match numerator ÷ denominator ({_plain(value)})")
        return value, numerator, denominator
    if not has_value:
        raise ValueError("give a value, or a numerator and a denominator")
    return check_value(unit, to_decimal(value_text, "value")), None, None


def _plain(number):
    """1.2500 -> '1.25', 40.0000 -> '40'."""
    if number is None:
        return ""
    text = f"{Decimal(number).quantize(Decimal('0.01'), rounding=ROUND_HALF_UP):f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def plain(number):
    """A stored number as typed back into a form or a file: 1.2500 -> '1.25', None -> ''."""
    return _plain(number)


def example_period(frequency):
    return "2025-Q1" if frequency == "quarter" else "2025-03"


def format_value(value, unit):
    """'42.5%', '8.3 min', '4.1 per 1,000', '12'; None -> '—'."""
    if value is None:
        return "—"
    rounded = Decimal(value).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)
    text = f"{rounded:,f}"
    if text.endswith(".0"):
        text = text[:-2]
    return text + SUFFIX.get(unit, "")


def format_change(change, unit):
    """'+3.5 points', '−2 min', 'no change'. Percent changes are percentage points."""
    if change is None:
        return "—"
    if change == 0:
        return "no change"
    sign = "+" if change > 0 else "−"
    magnitude = format_value(abs(change), unit)
    if unit == "percent":
        magnitude = magnitude.rstrip("%") + (" point" if abs(change) == 1 else " points")
    return sign + magnitude


# --- writes -------------------------------------------------------------------------------------------

def _clean(values):
    """Validated editable fields from a form's data; raises ValidationFailed naming each field."""
    errors, clean = {}, {}
    for name in ("name", "definition", "numerator", "denominator"):
        clean[name] = (values.get(name) or "").strip()
    if not clean["name"]:
        errors["name"] = "Give the indicator a name."
    elif len(clean["name"]) > 300:
        errors["name"] = "At most 300 characters."
    for name, choices in (("unit", INDICATOR_UNITS), ("direction", DIRECTIONS), ("frequency", FREQUENCIES)):
        clean[name] = values.get(name) or ""
        if clean[name] not in choices:
            errors[name] = f"Choose one of: {', '.join(choices.values())}."
    target = values.get("target_value")
    clean["target_value"] = None
    if target not in (None, ""):
        try:
            clean["target_value"] = check_value(clean.get("unit"), to_decimal(target, "target"))
        except ValueError as exc:
            errors["target_value"] = f"The target {exc}."
    clean["target_date"] = values.get("target_date") or None
    if errors:
        raise ValidationFailed(errors)
    return clean


def create_indicator(agency, values, *, actor, catalog_indicator=None):
    """A new indicator of the agency, its own or adopted from the catalog (the key is the catalog's)."""
    key = (values.get("key") or "").strip().lower()
    clean = _clean(values)
    if not KEY_RE.match(key):
        raise ValidationFailed({"key": "A short key of lower-case letters, digits and hyphens, e.g. cit-on-scene."})
    taken = db.session.execute(sa.select(Indicator.id).where(Indicator.agency_id == agency.id,
                                                             Indicator.key == key)).first()
    if taken:
        raise ValidationFailed({"key": f"The agency already has an indicator with the key '{key}'."})
    position = db.session.execute(sa.select(sa.func.count()).select_from(Indicator)
                                  .where(Indicator.agency_id == agency.id)).scalar()
    indicator = Indicator(agency_id=agency.id, key=key, position=position,
                          catalog_indicator_id=catalog_indicator.id if catalog_indicator else None, **clean)
    db.session.add(indicator)
    db.session.flush()
    audit.record("indicator.adopt" if catalog_indicator else "indicator.create", indicator, actor=actor,
                 after={"key": key, "name": clean["name"], "target": _plain(clean["target_value"])})
    return indicator


def adopt(agency, catalog_key, *, actor, frequency="quarter", target_value=None):
    """Adopt a suggested indicator: its words become the agency's, which it may then edit."""
    suggested = db.session.execute(sa.select(CatalogIndicator).where(
        CatalogIndicator.key == catalog_key, CatalogIndicator.retired_at.is_(None))).scalar_one_or_none()
    if suggested is None:
        raise ValidationFailed({"catalog_key": "Choose one of the suggested indicators."})
    values = {name: getattr(suggested, name) for name in ("key", "name", "definition", "numerator", "denominator",
                                                          "unit", "direction")}
    return create_indicator(agency, {**values, "frequency": frequency, "target_value": target_value}, actor=actor,
                            catalog_indicator=suggested)


def update_indicator(indicator, values, requirement_ids, *, actor):
    """Edit the words, unit, direction, target and the requirements the indicator evidences."""
    clean = _clean(values)
    requirements = []
    if requirement_ids:
        requirements = db.session.execute(sa.select(Requirement).where(
            Requirement.id.in_(requirement_ids), Requirement.agency_id == indicator.agency_id)).scalars().all()
        if len(requirements) != len(set(requirement_ids)):
            raise ValidationFailed({"requirement_ids": "Choose requirements of this agency."})
    if clean["frequency"] != indicator.frequency and db.session.execute(
            sa.select(IndicatorValue.id).where(IndicatorValue.indicator_id == indicator.id).limit(1)).first():
        raise ValidationFailed({"frequency": "The indicator has values already; its frequency cannot change."})
    before = {name: getattr(indicator, name) for name in EDIT_FIELDS}
    before["requirements"] = [r.code for r in indicator.requirements]
    changed = {name: value for name, value in clean.items() if _differs(getattr(indicator, name), value)}
    for name, value in changed.items():
        setattr(indicator, name, value)
    codes = sorted(r.code for r in requirements)
    if codes != sorted(before["requirements"]):
        indicator.requirements = sorted(requirements, key=lambda r: r.sort_key or r.code)
        changed["requirements"] = codes
    if changed:
        db.session.flush()
        audit.record("indicator.update", indicator, actor=actor,
                     before={k: _for_audit(before[k]) for k in changed},
                     after={k: _for_audit(v) for k, v in changed.items()})
    return bool(changed)


def _for_audit(value):
    return _plain(value) if isinstance(value, Decimal | float) else value


def _differs(old, new):
    if isinstance(old, int | float | Decimal) and isinstance(new, int | float | Decimal):
        return Decimal(str(old)) != Decimal(str(new))
    return old != new


def set_public(indicator, agency, public, *, actor):
    """Shown on the public transparency page or not (an admin decides, while the page is on)."""
    if public and not agency.public_enabled:
        raise ValidationFailed({"public": "The agency's public page is off; turn it on before publishing on it."})
    if indicator.public == public:
        return False
    indicator.public = public
    db.session.flush()
    audit.record("indicator.public", indicator, actor=actor, before={"public": not public}, after={"public": public})
    return True


_LOOK_UP = object()


def upsert_value(indicator, period_start, breakdown, resolved, note, *, actor, existing=_LOOK_UP):
    """Create or change one period's value; returns 'added', 'updated' or None (unchanged). No audit
    event: the caller writes one per action (one value typed, or one file imported). `existing`: the row
    already read by the caller (None: there is none), so an import does not query per row."""
    value, numerator, denominator = resolved
    row = existing if existing is not _LOOK_UP else db.session.execute(sa.select(IndicatorValue).where(
        IndicatorValue.indicator_id == indicator.id, IndicatorValue.period_start == period_start,
        IndicatorValue.breakdown == breakdown)).scalar_one_or_none()
    if row is None:
        db.session.add(IndicatorValue(indicator_id=indicator.id, period_start=period_start, breakdown=breakdown,
                                      value=value, numerator=numerator, denominator=denominator, note=note,
                                      created_by_id=actor.id if actor else None))
        return "added"
    new = {"value": value, "numerator": numerator, "denominator": denominator, "note": note}
    changed = {k: v for k, v in new.items() if _differs_or_none(getattr(row, k), v)}
    for k, v in changed.items():
        setattr(row, k, v)
    return "updated" if changed else None


def _differs_or_none(old, new):
    if old is None or new is None:
        return (old is None) != (new is None)
    return _differs(old, new)


def enter_value(indicator, form_values, *, actor):
    """One value typed on the indicator page; every problem names its field."""
    try:
        start = parse_period(form_values.get("period"), indicator.frequency)
    except ValueError as exc:
        raise ValidationFailed({"period": f"Period {exc}."}) from None
    breakdown = (form_values.get("breakdown") or "").strip()
    if len(breakdown) > 100:
        raise ValidationFailed({"breakdown": "At most 100 characters."})
    try:
        resolved = resolve_value(indicator.unit, form_values.get("value"), form_values.get("numerator_value"),
                                 form_values.get("denominator_value"))
    except ValueError as exc:
        raise ValidationFailed({"value": exc.args[0][0].upper() + exc.args[0][1:] + "."}) from None
    change = upsert_value(indicator, start, breakdown, resolved, (form_values.get("note") or "").strip(),
                          actor=actor)
    db.session.flush()
    if change:
        audit.record("indicator.value", indicator, actor=actor,
                     after={"period": period_label(start, indicator.frequency), "breakdown": breakdown,
                            "value": _plain(resolved[0]), "change": change})
    return change


# --- reads --------------------------------------------------------------------------------------------

@dataclass
class Summary:
    """One indicator with its overall series, latest value, change since the previous period and target."""

    indicator: Indicator
    points: list = field(default_factory=list)      # [(period_start, value Decimal)], oldest first
    breakdown_rows: list = field(default_factory=list)

    @property
    def latest(self):
        return self.points[-1] if self.points else None

    @property
    def previous(self):
        return self.points[-2] if len(self.points) > 1 else None

    @property
    def change(self):
        if self.latest is None or self.previous is None:
            return None
        return self.latest[1] - self.previous[1]

    @property
    def improved(self):
        """True/False when the latest change went the good way/the bad way; None without a change."""
        if not self.change:
            return None
        return (self.change > 0) == (self.indicator.direction == "up")

    @property
    def meets_target(self):
        target = self.indicator.target_value
        if target is None or self.latest is None:
            return None
        latest = self.latest[1]
        return latest >= target if self.indicator.direction == "up" else latest <= target

    def fmt(self, value):
        return format_value(value, self.indicator.unit)

    @property
    def latest_text(self):
        return self.fmt(self.latest[1]) if self.latest else "—"

    @property
    def latest_period(self):
        return period_name(self.latest[0], self.indicator.frequency) if self.latest else "—"

    @property
    def target_text(self):
        return self.fmt(self.indicator.target_value) if self.indicator.target_value is not None else "—"

    @property
    def change_text(self):
        return format_change(self.change, self.indicator.unit)

    @property
    def status_text(self):
        """'Target met', 'Not yet at target', 'No target set' or 'No values yet'."""
        if self.latest is None:
            return "No values yet"
        if self.indicator.target_value is None:
            return "No target set"
        return "Target met" if self.meets_target else "Not yet at target"


def agency_indicators(agency, public_only=False):
    return db.session.execute(_indicators_statement(public_only), {"agency": agency.id}).scalars().all()


@functools.cache
def _indicators_statement(public_only):
    """The dashboard asks on every render: built once per shape, run with parameters."""
    query = (sa.select(Indicator).where(Indicator.agency_id == sa.bindparam("agency"))
             .order_by(Indicator.position, Indicator.id))
    return query.where(Indicator.public.is_(True)) if public_only else query


def summaries(agency, public_only=False, with_breakdowns=False):
    """[Summary] for the agency's indicators: two queries whatever their number or their values'."""
    return _summaries(agency_indicators(agency, public_only), with_breakdowns)


def for_requirement(requirement):
    """[Summary] of the indicators linked to this requirement (its page lists them): two queries."""
    linked = db.session.execute(
        sa.select(Indicator).join(indicator_requirement, indicator_requirement.c.indicator_id == Indicator.id)
        .where(indicator_requirement.c.requirement_id == requirement.id, Indicator.agency_id == requirement.agency_id)
        .order_by(Indicator.position, Indicator.id)
    ).scalars().all()
    return _summaries(linked)


def _summaries(indicators, with_breakdowns=False):
    if not indicators:
        return []
    by_id = {i.id: Summary(i) for i in indicators}
    query = (sa.select(IndicatorValue).where(IndicatorValue.indicator_id.in_(by_id))
             .order_by(IndicatorValue.indicator_id, IndicatorValue.period_start, IndicatorValue.breakdown))
    if not with_breakdowns:
        query = query.where(IndicatorValue.breakdown == "")
    for row in db.session.execute(query).scalars():
        summary = by_id[row.indicator_id]
        if row.breakdown:
            summary.breakdown_rows.append(row)
        else:
            summary.points.append((row.period_start, Decimal(str(row.value))))
    return list(by_id.values())


def summary(indicator):
    """One indicator's Summary with its breakdown values (the indicator page)."""
    result = Summary(indicator)
    for row in db.session.execute(sa.select(IndicatorValue).where(IndicatorValue.indicator_id == indicator.id)
                                  .order_by(IndicatorValue.period_start, IndicatorValue.breakdown)).scalars():
        if row.breakdown:
            result.breakdown_rows.append(row)
        else:
            result.points.append((row.period_start, Decimal(str(row.value))))
    return result


def values_table(indicator):
    """Every value of the indicator with its numerator and denominator, oldest first (the data table)."""
    return db.session.execute(sa.select(IndicatorValue).where(IndicatorValue.indicator_id == indicator.id)
                              .order_by(IndicatorValue.period_start, IndicatorValue.breakdown)).scalars().all()


def breakdown_pivot(summary):
    """(breakdown names, [(period_start, {breakdown: value})]) for the table of parts."""
    names = sorted({row.breakdown for row in summary.breakdown_rows})
    periods = {}
    for row in summary.breakdown_rows:
        periods.setdefault(row.period_start, {})[row.breakdown] = Decimal(str(row.value))
    return names, sorted(periods.items())


def suggestions(agency):
    """Catalog indicators the agency has not adopted yet."""
    adopted = sa.select(Indicator.key).where(Indicator.agency_id == agency.id)
    return db.session.execute(sa.select(CatalogIndicator).where(
        CatalogIndicator.retired_at.is_(None), CatalogIndicator.key.not_in(adopted))
        .order_by(CatalogIndicator.name)).scalars().all()


def export_rows(agency):
    """One row per value: indicator key, name, period, breakdown, value, numerator, denominator, unit,
    target. The first four columns and the numbers re-import unchanged (tracker/services/indicator_import.py)."""
    rows = db.session.execute(
        sa.select(Indicator, IndicatorValue).join(IndicatorValue, IndicatorValue.indicator_id == Indicator.id)
        .where(Indicator.agency_id == agency.id)
        .order_by(Indicator.position, Indicator.id, IndicatorValue.period_start, IndicatorValue.breakdown)).all()
    for ind, v in rows:
        yield [ind.key, ind.name, period_label(v.period_start, ind.frequency), v.breakdown, _plain(v.value),
               _plain(v.numerator), _plain(v.denominator), ind.unit_label,
               _plain(ind.target_value) if ind.target_value is not None else ""]


EXPORT_COLUMNS = ("indicator", "name", "period", "breakdown", "value", "numerator", "denominator", "unit", "target")


# --- the chart ----------------------------------------------------------------------------------------

def _nice_top(value):
    """The axis maximum: 1, 2, 2.5 or 5 × a power of ten, at or above `value` (at least 1)."""
    value = max(Decimal(value), Decimal(1))
    power = Decimal(10) ** (len(str(int(value))) - 1)
    for step in (1, 2, Decimal("2.5"), 5, 10):
        if value <= step * power:
            return step * power
    return 10 * power


def chart(summary, width=720, height=300):
    """Coordinates for the server-drawn line chart of the overall series: one point per period, evenly spaced,
    the target as a dashed line, y from 0 (percent up to 100 when values pass 50). None without values."""
    points = summary.points
    if not points:
        return None
    ind = summary.indicator
    target = Decimal(str(ind.target_value)) if ind.target_value is not None else None
    highest = max([v for _p, v in points] + ([target] if target is not None else []))
    top_value = Decimal(100) if ind.unit == "percent" and highest > 50 else _nice_top(highest * Decimal("1.1"))
    left, right, top, bottom = 64, width - 24, 16, height - 48
    step = (right - left) / max(len(points) - 1, 1)

    def x(i):
        return round(left + step * i if len(points) > 1 else (left + right) / 2, 1)

    def y(value):
        return round(bottom - (bottom - top) * float(min(value, top_value) / top_value), 1)

    every = max(1, -(-len(points) // 10))  # at most about ten period labels
    ticks = [top_value * k / 4 for k in range(5)]
    return {
        "width": width, "height": height, "left": left, "right": right, "top": top, "bottom": bottom,
        "line": " ".join(f"{x(i)},{y(v)}" for i, (_p, v) in enumerate(points)),
        "dots": [(x(i), y(v), period_name(p, ind.frequency), format_value(v, ind.unit))
                 for i, (p, v) in enumerate(points)],
        "labels": [(x(i), period_name(p, ind.frequency)) for i, (p, _v) in enumerate(points)
                   if i % every == 0 or i == len(points) - 1],
        "ticks": [(y(t), format_value(t, ind.unit)) for t in ticks],
        "target_y": y(target) if target is not None else None,
        "target_text": format_value(target, ind.unit) if target is not None else None,
    }


# --- the API ------------------------------------------------------------------------------------------

def api_rows(agency):
    """The agency's indicators with their overall values for /api/v1 (two queries)."""
    rows = []
    for s in summaries(agency):
        ind = s.indicator
        rows.append({
            "key": ind.key, "name": ind.name, "definition": ind.definition, "numerator": ind.numerator,
            "denominator": ind.denominator, "unit": ind.unit, "direction": ind.direction,
            "frequency": ind.frequency, "public": ind.public,
            "target": float(ind.target_value) if ind.target_value is not None else None,
            "target_date": ind.target_date.isoformat() if ind.target_date else None,
            "latest": {"period": period_label(s.latest[0], ind.frequency), "value": float(s.latest[1])}
            if s.latest else None,
            "change": float(s.change) if s.change is not None else None,
            "meets_target": s.meets_target,
            "values": [{"period": period_label(p, ind.frequency), "value": float(v)} for p, v in s.points],
        })
    return rows
