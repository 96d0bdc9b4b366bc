"""Indicator values from a CSV or XLSX file (issue 14 §3), checked whole before anything is written.

One row per value: `indicator` (the indicator's key), `period` (2025-Q1 or 2025-03, as the indicator's
frequency says), then `value`, or `numerator` and `denominator` (the value is computed from them), and
optionally `breakdown` (District 3, Night shift…; empty = the overall figure) and `note`. The export's
own columns `name`, `unit` and `target` are accepted and ignored, so an exported file imports unchanged.
A value already recorded for the same indicator, period and breakdown is replaced. Any problem — an
unknown indicator, a bad period or number, the same value twice — is reported with its row and column
and nothing is written.
"""
import sqlalchemy as sa

from tracker.extensions import db
from tracker.models import Indicator, IndicatorValue
from tracker.services import audit
from tracker.services.imports import ImportFailed, _cell_text, read_rows
from tracker.services.indicators import parse_period, period_label, resolve_value, upsert_value

COLUMNS = ("indicator", "period", "value", "numerator", "denominator", "breakdown", "note")
IGNORED = ("name", "unit", "target")
MAX_ROWS = 5000
MAX_BYTES = 5 * 1024 * 1024
MAX_PROBLEMS = 50


def _check_header(filename, header):
    problems = []
    unknown = [h for h in header if h and h not in COLUMNS + IGNORED]
    if unknown:
        problems.append(f"unknown column(s) {', '.join(unknown)} (expected: {', '.join(COLUMNS)})")
    missing = [c for c in ("indicator", "period") if c not in header]
    if missing:
        problems.append(f"missing column(s): {', '.join(missing)}")
    if "value" not in header and not {"numerator", "denominator"} <= set(header):
        problems.append("missing column(s): value, or numerator and denominator")
    if problems:
        raise ImportFailed(filename, problems)


def _row(cells, header, number, indicators, problems):
    """One row as (indicator, period start, breakdown, (value, numerator, denominator), note), or None with
    its problems appended."""
    get = dict(zip(header, (_cell_text(c) for c in cells), strict=False))
    where = f"row {number}"
    key = get.get("indicator", "").strip().lower()
    indicator = indicators.get(key)
    if indicator is None:
        known = ", ".join(sorted(indicators)) or "none yet"
        problems.append(f"{where}, column indicator: '{key}' is not one of this agency's indicators ({known})"
                        if key else f"{where}, column indicator: empty")
        return None
    try:
        start = parse_period(get.get("period"), indicator.frequency)
    except ValueError as exc:
        problems.append(f"{where}, column period: {exc}")
        return None
    breakdown = get.get("breakdown", "").strip()
    if len(breakdown) > 100:
        problems.append(f"{where}, column breakdown: at most 100 characters")
        return None
    try:
        resolved = resolve_value(indicator.unit, get.get("value", ""), get.get("numerator", ""),
                                 get.get("denominator", ""))
    except ValueError as exc:
        column = "value" if get.get("value") or "numerator" not in header else "numerator/denominator"
        problems.append(f"{where}, column {column}: {exc}")
        return None
    return indicator, start, breakdown, resolved, get.get("note", "").strip()[:2000]


def parse(filename, data, agency):
    """Every row checked; [(indicator, start, breakdown, resolved, note)] or ImportFailed naming each bad row."""
    header, rows = read_rows(filename, data, max_rows=MAX_ROWS, max_bytes=MAX_BYTES)
    _check_header(filename, header)
    indicators = {i.key: i for i in db.session.execute(
        sa.select(Indicator).where(Indicator.agency_id == agency.id)).scalars()}
    problems, records, seen = [], [], {}
    for number, cells in rows:
        record = _row(cells, header, number, indicators, problems)
        if record is None:
            continue
        ident = (record[0].key, record[1], record[2])
        if ident in seen:
            problems.append(f"row {number}: {record[0].key} {period_label(record[1], record[0].frequency)}"
                            f"{' ' + record[2] if record[2] else ''} is also on row {seen[ident]}")
            continue
        seen[ident] = number
        records.append(record)
    if problems:
        more = [f"… and {len(problems) - MAX_PROBLEMS} more"] if len(problems) > MAX_PROBLEMS else []
        raise ImportFailed(filename, problems[:MAX_PROBLEMS] + more)
    if not records:
        raise ImportFailed(filename, ["the file has a header but no values"])
    return records


def import_values(agency, filename, data, *, actor):
    """Write the file's values (added or replaced) in the caller's transaction with one audit event.
    Returns {"added": n, "updated": n, "unchanged": n}. Two queries to read what exists, whatever the size."""
    records = parse(filename, data, agency)
    ids = {r[0].id for r in records}
    existing = {(v.indicator_id, v.period_start, v.breakdown): v for v in db.session.execute(
        sa.select(IndicatorValue).where(IndicatorValue.indicator_id.in_(ids))).scalars()}
    counts = {"added": 0, "updated": 0, "unchanged": 0}
    for indicator, start, breakdown, resolved, note in records:
        change = upsert_value(indicator, start, breakdown, resolved, note, actor=actor,
                              existing=existing.get((indicator.id, start, breakdown)))
        counts[change or "unchanged"] += 1
    db.session.flush()
    audit.record("indicator.import", agency, actor=actor,
                 after={"filename": filename, **counts, "indicators": sorted({r[0].key for r in records})})
    return counts
