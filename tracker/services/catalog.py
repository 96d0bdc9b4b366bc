"""Load the recommendation catalog (YAML) into the database.

Everything is validated before anything is written, and the whole load is one transaction:
a bad file names the file, record and field and changes nothing. A reload updates changed
text, adds new items and retires removed ones (never deletes what agencies may use).
"""
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

import sqlalchemy as sa
import yaml

from tracker.extensions import db
from tracker.models import (
    CADENCES,
    CITATION_BASIS,
    LEVEL_KINDS,
    SOURCE_KINDS,
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

TOP_KEYS = {"version", "modules", "sources", "recommendations", "compliance_scales"}
MODULE_FIELDS = {"key": True, "name": True, "description": False}
SOURCE_FIELDS = {
    "key": True, "title": True, "short_title": True, "jurisdiction": True, "kind": True, "year": False,
    "court": False, "effective_date": False, "effective_date_note": False, "url": False,
}
REC_FIELDS = {
    "id": True, "module": True, "title": True, "summary": True, "citations": True,
    "typical_deadline": False, "cadence": False, "cadence_note": False, "evidence_examples": False,
}
CITATION_FIELDS = {"source": True, "paragraphs": True, "basis": True, "note": False, "seen_at": False}
SCALE_FIELDS = {"key": True, "name": True, "description": False, "levels": True}
LEVEL_FIELDS = {"key": True, "label": True, "kind": True, "rank": False, "description": False}


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


def _check_fields(record, spec, where, problems):
    if not isinstance(record, dict):
        problems.append(f"{where}: expected a mapping, got {type(record).__name__}")
        return False
    for name in record:
        if name not in spec:
            problems.append(f"{where}: unknown field '{name}'")
    for name, required in spec.items():
        value = record.get(name)
        if required and (value is None or (isinstance(value, str) and not value.strip())):
            problems.append(f"{where}: field '{name}' is required")
    return True


def _text(record, name, where, problems, max_len=None):
    value = record.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        problems.append(f"{where}: field '{name}' must be text, got {type(value).__name__}")
        return None
    value = value.strip()
    if max_len and len(value) > max_len:
        problems.append(f"{where}: field '{name}' is longer than {max_len} characters")
    return value


def _date(record, name, where, problems):
    value = record.get(name)
    if isinstance(value, datetime):
        problems.append(f"{where}: field '{name}' must be a date like 2019-01-31, not a date and time")
        return None
    if value is None or isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        problems.append(f"{where}: field '{name}' must be a date like 2019-01-31, got {value!r}")
        return None


def parse_catalog(path):
    """Read and validate a catalog file. Returns plain dicts; raises CatalogError."""
    path = Path(path)
    try:
        raw = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CatalogError(path, [f"cannot read file: {exc.strerror}"]) from exc
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise CatalogError(path, [f"{where}not valid YAML ({problem})"]) from exc
    problems = []
    if not isinstance(data, dict):
        raise CatalogError(path, ["the file must be a mapping with modules, sources and recommendations"])
    for key in data:
        if key not in TOP_KEYS:
            problems.append(f"unknown top-level field '{key}'")
    version = data.get("version", 1)
    if not isinstance(version, int) or version < 1:
        problems.append(f"field 'version' must be a positive whole number, got {version!r}")
        version = 1

    for section in ("modules", "sources", "recommendations", "compliance_scales"):
        if section in data and not isinstance(data[section], list | type(None)):
            problems.append(f"field '{section}' must be a list of records")
            data[section] = []

    modules = []
    for i, rec in enumerate(data.get("modules") or []):
        where = f"module #{i + 1}" + (f" '{rec.get('key')}'" if isinstance(rec, dict) else "")
        if not _check_fields(rec, MODULE_FIELDS, where, problems):
            continue
        key = _text(rec, "key", where, problems)
        if key and key not in MODULE_KEYS:
            problems.append(f"{where}: field 'key': unknown module key '{key}' (known: {', '.join(MODULE_KEYS)})")
        modules.append({"key": key, "name": _text(rec, "name", where, problems, 200),
                        "description": _text(rec, "description", where, problems) or "", "position": i})
    module_keys = [m["key"] for m in modules]
    _duplicates(module_keys, "module", problems)

    sources = []
    for i, rec in enumerate(data.get("sources") or []):
        where = f"source #{i + 1}" + (f" '{rec.get('key')}'" if isinstance(rec, dict) else "")
        if not _check_fields(rec, SOURCE_FIELDS, where, problems):
            continue
        kind = _text(rec, "kind", where, problems)
        if kind and kind not in SOURCE_KINDS:
            problems.append(f"{where}: field 'kind': unknown kind '{kind}' (known: {', '.join(SOURCE_KINDS)})")
        year = rec.get("year")
        if year is not None and not isinstance(year, int):
            problems.append(f"{where}: field 'year' must be a whole number, got {year!r}")
            year = None
        sources.append({
            "key": _text(rec, "key", where, problems, 64), "title": _text(rec, "title", where, problems),
            "short_title": _text(rec, "short_title", where, problems, 200),
            "jurisdiction": _text(rec, "jurisdiction", where, problems, 300), "kind": kind, "year": year,
            "court": _text(rec, "court", where, problems, 300),
            "effective_date": _date(rec, "effective_date", where, problems),
            "effective_date_note": _text(rec, "effective_date_note", where, problems),
            "url": _text(rec, "url", where, problems, 1000),
        })
    source_keys = {s["key"] for s in sources}
    _duplicates([s["key"] for s in sources], "source", problems)

    recommendations = []
    for i, rec in enumerate(data.get("recommendations") or []):
        where = f"recommendation #{i + 1}" + (f" {rec.get('id')}" if isinstance(rec, dict) else "")
        if not _check_fields(rec, REC_FIELDS, where, problems):
            continue
        code = _text(rec, "id", where, problems)
        if code and not CODE_RE.match(code):
            problems.append(f"{where}: field 'id': '{code}' is not like CIT-004")
        module = _text(rec, "module", where, problems)
        if module and module not in module_keys:
            problems.append(f"{where}: field 'module': unknown module key '{module}'")
        amount = unit = None
        deadline = rec.get("typical_deadline")
        if deadline is not None:
            match = DEADLINE_RE.match(str(deadline).strip())
            if not match:
                problems.append(f"{where}: field 'typical_deadline' must look like '180 days' or '12 months', "
                                f"got {deadline!r}")
            else:
                amount, unit = int(match.group(1)), match.group(2)
        cadence = rec.get("cadence")
        if cadence is not None and cadence not in CADENCES:
            problems.append(f"{where}: field 'cadence': unknown cadence {cadence!r} (known: {', '.join(CADENCES)})")
        examples = rec.get("evidence_examples") or []
        if not isinstance(examples, list) or not all(isinstance(e, str) for e in examples):
            problems.append(f"{where}: field 'evidence_examples' must be a list of text")
            examples = []
        citations = []
        raw_citations = rec.get("citations") or []
        if not isinstance(raw_citations, list):
            problems.append(f"{where}: field 'citations' must be a list")
            raw_citations = []
        elif not raw_citations and "citations" in rec:
            problems.append(f"{where}: field 'citations' needs at least one citation")
        for j, cit in enumerate(raw_citations):
            cwhere = f"{where}, citation #{j + 1}"
            if not _check_fields(cit, CITATION_FIELDS, cwhere, problems):
                continue
            source = _text(cit, "source", cwhere, problems)
            if source and source not in source_keys:
                problems.append(f"{cwhere}: field 'source': unknown source '{source}'")
            basis = _text(cit, "basis", cwhere, problems)
            if basis and basis not in CITATION_BASIS:
                problems.append(f"{cwhere}: field 'basis': unknown basis '{basis}' "
                                f"(known: {', '.join(CITATION_BASIS)})")
            citations.append({
                "source": source, "paragraphs": _text(cit, "paragraphs", cwhere, problems, 300),
                "basis": basis, "note": _text(cit, "note", cwhere, problems),
                "seen_at": _text(cit, "seen_at", cwhere, problems, 1000),
            })
        recommendations.append({
            "code": code, "module": module, "title": _text(rec, "title", where, problems, 300),
            "summary": _text(rec, "summary", where, problems), "deadline_amount": amount,
            "deadline_unit": unit, "cadence": cadence,
            "cadence_note": _text(rec, "cadence_note", where, problems),
            "evidence_examples": [e.strip() for e in examples], "citations": citations,
        })
    _duplicates([r["code"] for r in recommendations], "recommendation", problems)

    scales = []
    for i, rec in enumerate(data.get("compliance_scales") or []):
        where = f"compliance scale #{i + 1}" + (f" '{rec.get('key')}'" if isinstance(rec, dict) else "")
        if not _check_fields(rec, SCALE_FIELDS, where, problems):
            continue
        levels = []
        for j, lvl in enumerate(rec.get("levels") or []):
            lwhere = f"{where}, level #{j + 1}"
            if not _check_fields(lvl, LEVEL_FIELDS, lwhere, problems):
                continue
            kind = _text(lvl, "kind", lwhere, problems)
            if kind and kind not in LEVEL_KINDS:
                problems.append(f"{lwhere}: field 'kind': unknown kind '{kind}' (known: {', '.join(LEVEL_KINDS)})")
            rank = lvl.get("rank", 0)
            if not isinstance(rank, int):
                problems.append(f"{lwhere}: field 'rank' must be a whole number")
                rank = 0
            levels.append({"key": _text(lvl, "key", lwhere, problems, 64),
                           "label": _text(lvl, "label", lwhere, problems, 200), "kind": kind,
                           "rank": rank, "position": j,
                           "description": _text(lvl, "description", lwhere, problems) or ""})
        if not any(lvl["kind"] == "rating" for lvl in levels):
            problems.append(f"{where}: field 'levels' needs at least one level of kind 'rating'")
        _duplicates([lvl["key"] for lvl in levels], f"{where} level", problems)
        scales.append({"key": _text(rec, "key", where, problems, 64), "name": _text(rec, "name", where, problems),
                       "description": _text(rec, "description", where, problems) or "", "levels": levels})
    _duplicates([s["key"] for s in scales], "compliance scale", problems)

    if not recommendations and not problems:
        problems.append("no recommendations found")
    if problems:
        raise CatalogError(path, problems)
    return {"version": version, "modules": modules, "sources": sources,
            "recommendations": recommendations, "scales": scales}


def _duplicates(keys, what, problems):
    seen = set()
    for key in keys:
        if key in seen:
            problems.append(f"{what} '{key}': field 'id' appears more than once (ids must be unique)")
        seen.add(key)


def _apply(obj, values):
    """Set changed attributes; return True if anything changed."""
    changed = False
    for name, value in values.items():
        if getattr(obj, name) != value:
            setattr(obj, name, value)
            changed = True
    return changed


def load_catalog(path, *, actor=None):
    """Validate then write the catalog in the caller's transaction. Returns a LoadReport."""
    data = parse_catalog(path)
    report = LoadReport()
    session = db.session

    modules = {m.key: m for m in session.execute(sa.select(Module)).scalars()}
    for values in data["modules"]:
        module = modules.get(values["key"])
        if module is None:
            module = modules[values["key"]] = Module(**values)
            session.add(module)
            report.other_changes += 1
        elif _apply(module, values):
            report.other_changes += 1
        report.modules += 1

    sources = {s.key: s for s in session.execute(sa.select(Source)).scalars()}
    for values in data["sources"]:
        source = sources.get(values["key"])
        if source is None:
            source = sources[values["key"]] = Source(**values)
            session.add(source)
            report.other_changes += 1
        elif _apply(source, values):
            report.other_changes += 1
        report.sources += 1
    session.flush()

    existing = {
        r.code: r
        for r in session.execute(
            sa.select(Recommendation).options(sa.orm.selectinload(Recommendation.citations))
        ).scalars()
    }
    seen = set()
    for values in data["recommendations"]:
        values = dict(values)
        citations = values.pop("citations")
        values["module_id"] = modules[values.pop("module")].id
        code = values["code"]
        seen.add(code)
        rec = existing.get(code)
        if rec is None:
            rec = Recommendation(**values, catalog_version=data["version"])
            rec.citations = [_citation(c, sources, k) for k, c in enumerate(citations)]
            session.add(rec)
            report.added.append(code)
            continue
        changed = _apply(rec, values)
        if rec.retired_at is not None:
            rec.retired_at = None
            changed = True
        wanted = [(c["source"], c["paragraphs"], c["basis"], c["note"], c["seen_at"]) for c in citations]
        have = [(c.source.key, c.paragraphs, c.basis, c.note, c.seen_at) for c in rec.citations]
        if wanted != have:
            rec.citations = [_citation(c, sources, k) for k, c in enumerate(citations)]
            changed = True
        if changed:
            rec.catalog_version = data["version"]
            report.updated.append(code)
        else:
            report.unchanged += 1
    now = utcnow()
    for code, rec in existing.items():
        if code not in seen and rec.retired_at is None:
            rec.retired_at = now
            report.retired.append(code)

    scales = {s.key: s for s in session.execute(
        sa.select(ComplianceScale).options(sa.orm.selectinload(ComplianceScale.levels))).scalars()}
    for values in data["scales"]:
        values = dict(values)
        levels = values.pop("levels")
        scale = scales.get(values["key"])
        if scale is None:
            scale = ComplianceScale(**values)
            session.add(scale)
            report.other_changes += 1
        elif _apply(scale, values):
            report.other_changes += 1
        by_key = {lvl.key: lvl for lvl in scale.levels}
        for lvl_values in levels:
            level = by_key.get(lvl_values["key"])
            if level is None:
                scale.levels.append(ComplianceLevel(**lvl_values))
                report.other_changes += 1
            elif _apply(level, lvl_values):
                report.other_changes += 1
        report.scales += 1
    session.flush()
    if not report.changed:
        return report
    audit.record("catalog.load", object_type="catalog", object_id=str(data["version"]), actor=actor,
                 after={"file": Path(path).name, "added": report.added, "updated": report.updated,
                        "retired": report.retired, "unchanged": report.unchanged})
    return report


def _citation(values, sources, position):
    return Citation(source_id=sources[values["source"]].id, position=position, paragraphs=values["paragraphs"],
                    basis=values["basis"], note=values["note"], seen_at=values["seen_at"])
