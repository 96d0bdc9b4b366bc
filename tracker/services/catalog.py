"""Load the recommendation catalog (YAML) into the database.

Everything is validated before anything is written, and the whole load is one transaction:
a bad file names the file, record and field and changes nothing. A reload updates changed
text, adds new items and retires removed ones (never deletes what agencies may use).

The file's shape is declared once, by the pydantic models below (`CatalogFile` and the records
it holds). A record field is written to the model column of the same name, so extending the
catalog means adding the field to its spec here and the column to the model. Checks that look
across records (duplicate keys, references to modules and sources) are plain code after the
schema pass.
"""
import gc
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import partial
from pathlib import Path
from typing import Annotated, get_origin

import sqlalchemy as sa
import yaml
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, PlainValidator, StringConstraints
from pydantic import ValidationError as SchemaError
from pydantic_core import PydanticCustomError

from tracker.extensions import db
from tracker.models import (
    ASSESSMENT_KINDS,
    CADENCES,
    CITATION_BASIS,
    DIRECTIONS,
    INDICATOR_UNITS,
    LEVEL_KINDS,
    SOURCE_KINDS,
    CatalogIndicator,
    Citation,
    ComplianceLevel,
    ComplianceScale,
    Module,
    Recommendation,
    Source,
    utcnow,
)
from tracker.services import audit

MODULE_KEYS = ("diversion", "cit", "data", "advisory", "additional")
DEADLINE_RE = re.compile(r"^(\d{1,4}) (days|months)$")
CODE_RE = re.compile(r"^[A-Z]{2,8}-\d{3,4}$")
# The C parser reads the catalog about five times faster than the pure-Python one.
YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class CatalogError(Exception):
    """The catalog file is invalid. `problems` lists every problem found; nothing was written."""

    def __init__(self, path, problems):
        self.path = str(path)
        self.problems = problems
        super().__init__("\n".join(f"{self.path}: {p}" for p in problems))


@dataclass
class LoadReport:
    added: list = field(default_factory=list)
    updated: list = field(default_factory=list)
    retired: list = field(default_factory=list)
    unchanged: int = 0
    modules: int = 0
    sources: int = 0
    scales: int = 0
    other_changes: int = 0  # modules, sources and scales added or edited

    @property
    def changed(self):
        return bool(self.added or self.updated or self.retired or self.other_changes)

    def summary(self):
        return (f"{len(self.added)} added, {len(self.updated)} updated, {len(self.retired)} retired, "
                f"{self.unchanged} unchanged ({self.modules} modules, {self.sources} sources, "
                f"{self.scales} compliance scales)")


# --- the declared schema --------------------------------------------------------------------------


def _invalid(template, **context):
    """A schema error whose message is ours; values go through the context so braces in them stay text."""
    return PydanticCustomError("catalog", template, context or None)


def plain_text(max_length=None, *, required=True):
    """Text with surrounding spaces dropped; a required one may not be blank."""
    return Annotated[str, StringConstraints(strip_whitespace=True, min_length=1 if required else None,
                                            max_length=max_length)]


def optional_text(max_length=None):
    return plain_text(max_length, required=False) | None


# A description may be left out or null; the column keeps "" then.
Description = Annotated[plain_text(required=False), BeforeValidator(lambda value: "" if value is None else value)]


def one_of(choices, what):
    """Text that must be one of `choices`; the message lists them."""
    def check(value):
        if value not in choices:
            raise _invalid("unknown {what} '{value}' (known: {known})", what=what, value=value,
                           known=", ".join(choices))
        return value
    return Annotated[plain_text(), AfterValidator(check)]


def _code(value):
    if not CODE_RE.match(value):
        raise _invalid("'{value}' is not like CIT-004", value=value)
    return value


def _date(value):
    # YAML reads 2019-01-31 as a date and a quoted one as text; a time of day would be lost, so it is refused.
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    if isinstance(value, datetime):
        raise _invalid("must be a date like 2019-01-31, not a date and time")
    raise _invalid("must be a date like 2019-01-31, got {value}", value=repr(value))


def _deadline(value):
    match = DEADLINE_RE.match(value.strip()) if isinstance(value, str) else None
    if not match:
        raise _invalid("must look like '180 days' or '12 months', got {value}", value=repr(value))
    return int(match.group(1)), match.group(2)


Code = Annotated[plain_text(32), AfterValidator(_code)]
CatalogDate = Annotated[date, PlainValidator(_date)]
Deadline = Annotated[tuple[int, str], PlainValidator(_deadline)]


class Spec(BaseModel):
    """A catalog record: unknown fields are refused and nothing is coerced (no "12" for 12)."""
    model_config = ConfigDict(extra="forbid", strict=True)


class ModuleSpec(Spec):
    key: one_of(MODULE_KEYS, "module key")
    name: plain_text(200)
    description: Description = ""


class SourceSpec(Spec):
    key: plain_text(64)
    title: plain_text()
    short_title: plain_text(200)
    jurisdiction: plain_text(300)
    kind: one_of(SOURCE_KINDS, "kind")
    year: int | None = None
    court: optional_text(300) = None
    effective_date: CatalogDate | None = None
    effective_date_note: optional_text() = None
    url: optional_text(1000) = None


class CitationSpec(Spec):
    source: plain_text(64)
    paragraphs: plain_text(300)
    basis: one_of(CITATION_BASIS, "basis")
    note: optional_text() = None
    seen_at: optional_text(1000) = None


class RecommendationSpec(Spec):
    id: Code
    module: plain_text(32)
    title: plain_text(300)
    summary: plain_text()
    citations: list[CitationSpec] = Field(min_length=1)
    typical_deadline: Deadline | None = None
    cadence: one_of(CADENCES, "cadence") | None = None
    cadence_note: optional_text() = None
    evidence_examples: list[plain_text()] = []


class LevelSpec(Spec):
    key: plain_text(64)
    label: plain_text(200)
    kind: one_of(LEVEL_KINDS, "kind")
    rank: int = 0  # order among "rating" levels: 0 = not in compliance, higher is better
    description: Description = ""
    ladder: bool = False  # a step assessed separately on per-level and percentage scales
    threshold: Annotated[float, Field(ge=0, le=100)] | None = None  # percentage scales: share that meets it


class ScaleSpec(Spec):
    key: plain_text(64)
    name: plain_text(200)
    description: Description = ""
    assessment: one_of(tuple(ASSESSMENT_KINDS), "assessment") = "single"
    levels: list[LevelSpec]


class IndicatorSpec(Spec):
    """A suggested outcome indicator (issue 14): what to count and which way is better."""
    key: plain_text(64)
    module: plain_text(32)
    name: plain_text(300)
    definition: plain_text()
    numerator: Description = ""
    denominator: Description = ""
    unit: one_of(tuple(INDICATOR_UNITS), "unit")
    direction: one_of(tuple(DIRECTIONS), "direction")


class CatalogFile(Spec):
    version: Annotated[int, Field(ge=1)] = 1
    modules: list[ModuleSpec] = []
    sources: list[SourceSpec] = []
    recommendations: list[RecommendationSpec] = []
    compliance_scales: list[ScaleSpec] = []
    indicators: list[IndicatorSpec] = []


# --- reading and validating -----------------------------------------------------------------------


def parse_catalog(path):
    """Read and validate a catalog file. Returns a CatalogFile; raises CatalogError."""
    data = _read(path)
    catalog, positions, problems = _schema_pass(data)
    problems += _cross_record_problems(catalog, positions, data)
    if not catalog.recommendations and not problems:
        problems.append("no recommendations found")
    if problems:
        raise CatalogError(path, problems)
    return catalog


def _read(path):
    path = Path(path)
    try:
        raw = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CatalogError(path, [f"cannot read file: {exc.strerror}"]) from exc
    try:
        data = yaml.load(raw, Loader=YAML_LOADER)  # noqa: S506 -- CSafeLoader or SafeLoader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise CatalogError(path, [f"{where}not valid YAML ({problem})"]) from exc
    if not isinstance(data, dict):
        raise CatalogError(path, ["the file must be a mapping with modules, sources and recommendations"])
    return data


def _schema_pass(data):
    """Validate against CatalogFile. Returns the valid part, each record's position in the file, and the
    problems. A record with a problem is left out, so the cross-record checks still run on the others."""
    try:
        catalog = CatalogFile.model_validate(data)
    except SchemaError as exc:
        errors = exc.errors()
    else:
        return catalog, {name: range(len(getattr(catalog, name))) for name in _sections()}, []
    bad = {tuple(err["loc"][:2]) for err in errors}
    valid, positions = {}, {}
    for name, value in data.items():
        if (name,) in bad:
            continue
        if name in _sections():
            positions[name] = [i for i in range(len(value)) if (name, i) not in bad]
            value = [value[i] for i in positions[name]]
        valid[name] = value
    return CatalogFile.model_validate(valid), positions, [_problem(err, data) for err in errors]


def _sections():
    """The top-level lists of records."""
    return [name for name, info in CatalogFile.model_fields.items() if get_origin(info.annotation) is list]


def _problem(err, data):
    """One pydantic error in our words: "recommendation #1 CIT-001, citation #2: field 'basis': ..."."""
    kind, loc, node, where = err["type"], list(err["loc"]), data, []
    # Walk down lists of records, naming each: ('recommendations', 0, 'citations', 1, 'basis').
    while len(loc) >= 2 and isinstance(loc[1], int) and (len(loc) > 2 or kind == "model_type"):
        node = node[loc[0]][loc[1]]
        where.append(_label(loc[0], loc[1], node))
        loc = loc[2:]
    where = ", ".join(where)
    if kind == "extra_forbidden":
        body = f"unknown {'field' if where else 'top-level field'} '{loc[0]}'"
    elif not loc:
        body = _message(err)
    else:
        item = "".join(f" item #{part + 1}" for part in loc[1:] if isinstance(part, int))
        message = _message(err)
        separator = " " if message.startswith(("is ", "must ", "needs ")) else ": "
        body = f"field '{loc[0]}'{item}{separator}{message}"
    return f"{where}: {body}" if where else body


def _label(section, index, record):
    """"recommendation #3 DAT-001", "source #2 'beta_fl_2021'", "citation #1": codes bare, keys quoted."""
    label = f"{section.removesuffix('s').replace('_', ' ')} #{index + 1}"
    if isinstance(record, dict) and isinstance(record.get("id"), str):
        return f"{label} {record['id']}"
    if isinstance(record, dict) and isinstance(record.get("key"), str):
        return f"{label} '{record['key']}'"
    return label


def _message(err):
    kind, value, context = err["type"], err["input"], err.get("ctx") or {}
    if kind == "catalog":
        return err["msg"]
    if kind == "model_type":
        return f"expected a mapping, got {'null' if value is None else type(value).__name__}"
    if kind in ("missing", "string_too_short") or (value is None and kind.endswith("_type")):
        return "is required"
    messages = {
        "string_type": f"must be text, got {type(value).__name__}",
        "int_type": f"must be a whole number, got {value!r}",
        "list_type": f"must be a list, got {type(value).__name__}",
        "string_too_long": f"is longer than {context.get('max_length')} characters",
        "greater_than_equal": f"must be {context.get('ge')} or more, got {value!r}",
        "too_short": "needs at least one entry",
    }
    return messages.get(kind, err["msg"])


def _cross_record_problems(catalog, positions, data):
    """Checks across records, on those that passed the schema. References are checked against every key
    the file declares, so one bad module record does not also flag every recommendation in it."""
    problems = []
    for name, what, key in (("modules", "module", "key"), ("sources", "source", "key"),
                            ("recommendations", "recommendation", "id"),
                            ("compliance_scales", "compliance scale", "key"), ("indicators", "indicator", "key")):
        problems += _duplicates([getattr(r, key) for r in getattr(catalog, name)], what, key)
    modules, sources = _declared(data, "modules"), _declared(data, "sources")
    for position, rec in zip(positions.get("recommendations", ()), catalog.recommendations, strict=True):
        where = _label("recommendations", position, data["recommendations"][position])
        if modules is not None and rec.module not in modules:
            problems.append(f"{where}: field 'module': unknown module key '{rec.module}'")
        for j, citation in enumerate(rec.citations):
            if sources is not None and citation.source not in sources:
                problems.append(f"{where}, citation #{j + 1}: field 'source': unknown source '{citation.source}'")
    for position, ind in zip(positions.get("indicators", ()), catalog.indicators, strict=True):
        if modules is not None and ind.module not in modules:
            where = _label("indicators", position, data["indicators"][position])
            problems.append(f"{where}: field 'module': unknown module key '{ind.module}'")
    for position, scale in zip(positions.get("compliance_scales", ()), catalog.compliance_scales, strict=True):
        where = _label("compliance_scales", position, data["compliance_scales"][position])
        if not any(level.kind == "rating" for level in scale.levels):
            problems.append(f"{where}: field 'levels' needs at least one level of kind 'rating'")
        problems += _duplicates([level.key for level in scale.levels], f"{where}, level", "key")
        problems += _ladder_problems(scale, where)
    return problems


def _ladder_problems(scale, where):
    """Per-level and percentage scales assess a ladder of rating levels; percentage ones need thresholds."""
    ladder = [level for level in scale.levels if level.ladder]
    if scale.assessment == "single":
        return []
    problems = [] if ladder else [f"{where}: field 'levels' needs at least one level with 'ladder: true' "
                                  f"for assessment '{scale.assessment}'"]
    for level in ladder:
        if level.kind != "rating":
            problems.append(f"{where}, level '{level.key}': a ladder level must be of kind 'rating'")
        if scale.assessment == "percentage" and level.threshold is None:
            problems.append(f"{where}, level '{level.key}': field 'threshold' is required on a percentage scale")
    return problems


def _duplicates(keys, what, name):
    seen, problems = set(), []
    for key in keys:
        if key in seen:
            problems.append(f"{what} '{key}': field '{name}' appears more than once ({name}s must be unique)")
        seen.add(key)
    return problems


def _declared(data, section):
    """Every key the section declares, or None when the section is no list (the schema pass said so)."""
    records = data.get(section, [])
    if not isinstance(records, list):
        return None
    return {r["key"].strip() for r in records if isinstance(r, dict) and isinstance(r.get("key"), str)}


# --- writing --------------------------------------------------------------------------------------


@contextmanager
def _collector_paused():
    """A load makes thousands of objects that live until it ends; the cyclic garbage collector would scan
    them over and over (about 40% of the CPU time of loading 1,000 recommendations)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@_collector_paused()
def load_catalog(path, *, actor=None):
    """Validate then write the catalog in the caller's transaction. Returns a LoadReport."""
    catalog = parse_catalog(path)
    report = LoadReport(modules=len(catalog.modules), sources=len(catalog.sources),
                        scales=len(catalog.compliance_scales))
    modules = _existing(Module)
    rows = [{**spec.model_dump(), "position": i} for i, spec in enumerate(catalog.modules)]
    report.other_changes += _changes(_upsert(modules, rows, "key", Module))
    sources = _existing(Source)
    report.other_changes += _changes(_upsert(sources, [s.model_dump() for s in catalog.sources], "key", Source))
    db.session.flush()
    _load_recommendations(catalog, modules, sources, report)
    _load_scales(catalog.compliance_scales, report)
    report.other_changes += _changes(_upsert(_existing(CatalogIndicator), [
        {**spec.model_dump(exclude={"module"}), "module_id": modules[spec.module].id, "retired_at": None}
        for spec in catalog.indicators], "key", CatalogIndicator))
    db.session.flush()
    if report.changed:
        audit.record("catalog.load", object_type="catalog", object_id=str(catalog.version), actor=actor,
                     after={"file": Path(path).name, "added": report.added, "updated": report.updated,
                            "retired": report.retired, "unchanged": report.unchanged})
    return report


def _load_recommendations(catalog, modules, sources, report):
    existing = _existing(Recommendation, Recommendation.citations, key="code")
    rows = [{**spec.model_dump(exclude={"id", "module", "typical_deadline", "citations"}), "code": spec.id,
             "module_id": modules[spec.module].id, "deadline_amount": (spec.typical_deadline or (None, None))[0],
             "deadline_unit": (spec.typical_deadline or (None, None))[1]} for spec in catalog.recommendations]
    make = partial(Recommendation, catalog_version=catalog.version)
    for spec, (rec, change) in zip(catalog.recommendations, _upsert(existing, rows, "code", make), strict=True):
        citations = [{**c.model_dump(exclude={"source"}), "source_id": sources[c.source].id, "position": k}
                     for k, c in enumerate(spec.citations)]
        if change == "added":
            rec.citations = [Citation(**values) for values in citations]
            report.added.append(rec.code)
            continue
        changed = change == "updated"
        if rec.retired_at is not None:
            rec.retired_at = None
            changed = True
        if [{name: getattr(c, name) for name in citations[0]} for c in rec.citations] != citations:
            rec.citations = [Citation(**values) for values in citations]
            changed = True
        if changed:
            rec.catalog_version = catalog.version
            report.updated.append(rec.code)
        else:
            report.unchanged += 1
    listed = {spec.id for spec in catalog.recommendations}
    now = utcnow()
    for code, rec in existing.items():
        if code not in listed and rec.retired_at is None:
            rec.retired_at = now
            report.retired.append(code)


def _load_scales(specs, report):
    scales = _existing(ComplianceScale, ComplianceScale.levels)
    rows = [spec.model_dump(exclude={"levels"}) for spec in specs]
    for spec, (scale, change) in zip(specs, _upsert(scales, rows, "key", ComplianceScale), strict=True):
        levels = [{**level.model_dump(), "position": j} for j, level in enumerate(spec.levels)]
        by_key = {level.key: level for level in scale.levels}
        report.other_changes += bool(change) + _changes(
            _upsert(by_key, levels, "key", partial(ComplianceLevel, scale=scale)))


def _existing(model, *children, key="key"):
    """Every row of `model` by its catalog key, with `children` loaded in one more query."""
    query = sa.select(model).options(*(sa.orm.selectinload(child) for child in children))
    return {getattr(row, key): row for row in db.session.execute(query).scalars()}


def _upsert(existing, rows, key, make):
    """Create or update one object per row, matched on row[key] in `existing` (which gains the new ones).
    Returns (object, change) per row, change being "added", "updated" or None."""
    results = []
    for values in rows:
        obj = existing.get(values[key])
        if obj is None:
            obj = existing[values[key]] = make(**values)
            db.session.add(obj)
            results.append((obj, "added"))
        else:
            results.append((obj, "updated" if _apply(obj, values) else None))
    return results


def _changes(results):
    return sum(1 for _, change in results if change)


def _apply(obj, values):
    """Set changed attributes; return True if anything changed."""
    changed = False
    for name, value in values.items():
        if getattr(obj, name) != value:
            setattr(obj, name, value)
            changed = True
    return changed
