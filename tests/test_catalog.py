"""Recommendation catalog: the YAML loader (service and CLI), reloads, the real seed, pages and the API."""
import copy
import gc
from datetime import date, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml
from markupsafe import escape

from tests.factories import make_agency, make_requirement
from tracker.models import (
    CITATION_BASIS,
    AuditEvent,
    CatalogIndicator,
    Citation,
    ComplianceScale,
    Module,
    Recommendation,
    Requirement,
    Source,
    utcnow,
)
from tracker.services.catalog import YAML_LOADER, CatalogError, load_catalog

REPO_SEED = Path(__file__).resolve().parent.parent / "seed" / "catalog.yaml"

BASE = {
    "version": 1,
    "modules": [
        {"key": "cit", "name": "Crisis Intervention Teams",
         "description": "How the CIT program is organised."},
        {"key": "data", "name": "Data Collection and Analysis"},
    ],
    "sources": [
        {"key": "alpha_cd_2019", "title": "Consent Decree, United States v. City of Alpha",
         "short_title": "Alpha Consent Decree (2019)", "jurisdiction": "Alpha, Ohio",
         "kind": "consent_decree",
         "year": 2019, "court": "N.D. Ohio", "effective_date": date(2019, 1, 31),
         "url": "https://alpha.example.test/decree"},
        {"key": "beta_fl_2021", "title": "Findings letter on the Beta Police Department",
         "short_title": "Beta Findings Letter (2021)", "jurisdiction": "Beta, Oregon",
         "kind": "findings_letter",
         "effective_date": "2021-06-01"},
    ],
    "recommendations": [
        {"id": "CIT-001", "module": "cit", "title": "Name a CIT program coordinator",
         "summary": "Appoint one commander who runs the crisis-intervention program.",
         "typical_deadline": "180 days",
         "citations": [
             {"source": "alpha_cd_2019", "paragraphs": "¶ 131", "basis": "primary_text",
              "note": "Read in the decree text.", "seen_at": "https://alpha.example.test/decree#131"},
             {"source": "beta_fl_2021", "paragraphs": "p. 4", "basis": "secondary_description"},
         ],
         "evidence_examples": ["Appointment memo", "Organisation chart"]},
        {"id": "CIT-002", "module": "cit", "title": "Refresher training for CIT officers",
         "summary": "Give every CIT officer refresher training.",
         "typical_deadline": "12 months", "cadence": "annual", "cadence_note": "Each calendar year",
         "citations": [{"source": "alpha_cd_2019", "paragraphs": "¶¶ 140-142", "basis": "unverified"}]},
        {"id": "DAT-001", "module": "data", "title": "Document every crisis contact",
         "summary": "Record each behavioral-health contact on one form.",
         "citations": [{"source": "beta_fl_2021", "paragraphs": "Section III",
                        "basis": "secondary_description"}]},
    ],
    "compliance_scales": [
        {"key": "simple", "name": "Simple scale", "description": "Three levels.",
         "levels": [
             {"key": "not_assessed", "label": "Not yet assessed", "kind": "unassessed"},
             {"key": "partial", "label": "Partial compliance", "kind": "rating", "rank": 1},
             {"key": "full", "label": "Full compliance", "kind": "rating", "rank": 2,
              "description": "Done in practice."},
         ]},
    ],
}


def catalog_data():
    return copy.deepcopy(BASE)


def write_catalog(tmp_path, data, name="catalog.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def rec_by_id(data, code):
    return next(r for r in data["recommendations"] if r["id"] == code)


def count(db, model):
    return db.session.execute(sa.select(sa.func.count()).select_from(model)).scalar_one()


def state(db):
    """Row counts and the recommendation text, to show a failed load changed nothing."""
    counts = {m.__name__: count(db, m) for m in (Recommendation, Module, Source, AuditEvent, Citation,
                                                   ComplianceScale)}
    recs = db.session.execute(
        sa.select(Recommendation.code, Recommendation.summary, Recommendation.retired_at)
        .order_by(Recommendation.code)
    ).all()
    return counts, [tuple(r) for r in recs]


def get_rec(db, code):
    return db.session.execute(sa.select(Recommendation).where(Recommendation.code == code)).scalar_one()


# --- loading a valid file -------------------------------------------------------------------------


def test_valid_catalog_loads(db, tmp_path):
    path = write_catalog(tmp_path, catalog_data())
    report = load_catalog(path)
    db.session.commit()

    assert sorted(report.added) == ["CIT-001", "CIT-002", "DAT-001"]
    assert report.updated == [] and report.retired == [] and report.unchanged == 0
    assert (report.modules, report.sources, report.scales) == (2, 2, 1)
    assert report.changed
    assert report.summary().startswith("3 added, 0 updated, 0 retired, 0 unchanged")

    assert count(db, Recommendation) == 3 and count(db, Module) == 2 and count(db, Source) == 2
    assert count(db, Citation) == 4

    modules = db.session.execute(sa.select(Module).order_by(Module.position)).scalars().all()
    assert [(m.key, m.name, m.position) for m in modules] == [
        ("cit", "Crisis Intervention Teams", 0), ("data", "Data Collection and Analysis", 1)]
    assert modules[1].description == ""

    alpha = db.session.execute(sa.select(Source).where(Source.key == "alpha_cd_2019")).scalar_one()
    beta = db.session.execute(sa.select(Source).where(Source.key == "beta_fl_2021")).scalar_one()
    assert alpha.effective_date == date(2019, 1, 31) and alpha.year == 2019 and alpha.court == "N.D. Ohio"
    assert beta.effective_date == date(2021, 6, 1)  # quoted date string parsed too
    assert beta.kind_label == "Findings letter or report" and beta.year is None

    cit1 = get_rec(db, "CIT-001")
    assert cit1.module.key == "cit"
    assert (cit1.deadline_amount, cit1.deadline_unit, cit1.typical_deadline) == (180, "days", "180 days")
    assert cit1.cadence is None and cit1.retired_at is None and cit1.catalog_version == 1
    assert cit1.evidence_examples == ["Appointment memo", "Organisation chart"]
    assert [(c.source.key, c.paragraphs, c.basis, c.position) for c in cit1.citations] == [
        ("alpha_cd_2019", "¶ 131", "primary_text", 0), ("beta_fl_2021", "p. 4", "secondary_description", 1)]
    assert cit1.citations[0].note == "Read in the decree text."
    assert cit1.citations[0].seen_at == "https://alpha.example.test/decree#131"
    assert cit1.citations[0].basis_label == "Primary text read"

    cit2 = get_rec(db, "CIT-002")
    assert (cit2.deadline_amount, cit2.deadline_unit) == (12, "months")
    assert cit2.cadence == "annual" and cit2.cadence_note == "Each calendar year"
    assert cit2.evidence_examples == []
    assert [(c.source.key, c.paragraphs, c.basis) for c in cit2.citations] == [
        ("alpha_cd_2019", "¶¶ 140-142", "unverified")]

    dat1 = get_rec(db, "DAT-001")
    assert dat1.module.key == "data" and dat1.deadline_amount is None and dat1.deadline_unit is None

    scale = db.session.execute(sa.select(ComplianceScale).where(ComplianceScale.key == "simple")).scalar_one()
    assert scale.name == "Simple scale" and scale.description == "Three levels."
    assert [(lvl.key, lvl.label, lvl.kind, lvl.rank, lvl.position) for lvl in scale.levels] == [
        ("not_assessed", "Not yet assessed", "unassessed", 0, 0),
        ("partial", "Partial compliance", "rating", 1, 1),
        ("full", "Full compliance", "rating", 2, 2)]
    assert scale.levels[2].description == "Done in practice." and scale.top_level.key == "full"

    events = db.session.execute(sa.select(AuditEvent)).scalars().all()
    assert [e.action for e in events] == ["catalog.load"]
    assert sorted(events[0].after["added"]) == ["CIT-001", "CIT-002", "DAT-001"]


def test_cli_loads_valid_catalog(app, db, tmp_path):
    path = write_catalog(tmp_path, catalog_data())
    result = app.test_cli_runner().invoke(args=["catalog", "load", str(path)])
    assert result.exit_code == 0, result.output
    assert "3 added, 0 updated, 0 retired, 0 unchanged" in result.output
    db.session.rollback()
    assert count(db, Recommendation) == 3


# --- invalid files --------------------------------------------------------------------------------


def _unknown_module(data):
    rec_by_id(data, "CIT-002")["module"] = "training"


def _undeclared_module_key(data):
    data["modules"].append({"key": "training", "name": "Training"})


def _duplicate_id(data):
    rec_by_id(data, "DAT-001")["id"] = "CIT-002"


def _unknown_source(data):
    rec_by_id(data, "CIT-002")["citations"][0]["source"] = "gamma_cd_2030"


def _bad_effective_date(data):
    data["sources"][1]["effective_date"] = "sometime in 2021"


def _unknown_field(data):
    rec_by_id(data, "DAT-001")["colour"] = "blue"


def _bad_deadline(data):
    rec_by_id(data, "CIT-001")["typical_deadline"] = "6 weeks"


def _bad_basis(data):
    rec_by_id(data, "CIT-001")["citations"][1]["basis"] = "hearsay"


def _set(*path_and_value, code=None):
    """A mutation setting data[path...] = value, from recommendation `code` when given."""
    *path, key, value = path_and_value

    def mutate(data):
        node = rec_by_id(data, code) if code else data
        for part in path:
            node = node[part]
        node[key] = value
    return mutate


def _drop(code, field):
    return lambda data: rec_by_id(data, code).pop(field)


def _no_rating_level(data):
    for level in data["compliance_scales"][0]["levels"]:
        level["kind"] = "unassessed"


# (mutation, the one problem reported, exactly)
INVALID = {
    "unknown_module": (_unknown_module,
                       "recommendation #2 CIT-002: field 'module': unknown module key 'training'"),
    "undeclared_module_key": (_undeclared_module_key,
                              "module #3 'training': field 'key': unknown module key 'training' "
                              "(known: diversion, cit, data, advisory, additional)"),
    "duplicate_id": (_duplicate_id, "recommendation 'CIT-002': field 'id' appears more than once (ids must be unique)"),
    "unknown_source": (_unknown_source,
                       "recommendation #2 CIT-002, citation #1: field 'source': unknown source 'gamma_cd_2030'"),
    "bad_effective_date": (_bad_effective_date,
                           "source #2 'beta_fl_2021': field 'effective_date' must be a date like 2019-01-31, "
                           "got 'sometime in 2021'"),
    "timestamp_effective_date": (_set("sources", 0, "effective_date", datetime(2019, 1, 31, 10, 0)),
                                 "source #1 'alpha_cd_2019': field 'effective_date' must be a date like "
                                 "2019-01-31, not a date and time"),
    "unknown_field": (_unknown_field, "recommendation #3 DAT-001: unknown field 'colour'"),
    "bad_deadline": (_bad_deadline, "recommendation #1 CIT-001: field 'typical_deadline' must look like "
                                    "'180 days' or '12 months', got '6 weeks'"),
    "bad_basis": (_bad_basis,
                  "recommendation #1 CIT-001, citation #2: field 'basis': unknown basis 'hearsay' "
                  "(known: primary_text, secondary_description, unverified)"),
    "blank_title": (_set("title", "   ", code="CIT-002"),
                    "recommendation #2 CIT-002: field 'title' is required"),
    "missing_summary": (_drop("DAT-001", "summary"), "recommendation #3 DAT-001: field 'summary' is required"),
    "bad_code": (_set("id", "dat-1", code="DAT-001"),
                 "recommendation #3 dat-1: field 'id': 'dat-1' is not like CIT-004"),
    "unknown_cadence": (_set("cadence", "weekly", code="CIT-002"),
                        "recommendation #2 CIT-002: field 'cadence': unknown cadence 'weekly' "
                        "(known: monthly, quarterly, semiannual, annual)"),
    "no_citations": (_set("citations", [], code="DAT-001"),
                     "recommendation #3 DAT-001: field 'citations' needs at least one entry"),
    "citation_not_a_mapping": (_set("citations", ["¶¶ 140-142"], code="CIT-002"),
                               "recommendation #2 CIT-002, citation #1: expected a mapping, got str"),
    "unknown_citation_field": (_set("citations", 0, "page", 4, code="CIT-001"),
                               "recommendation #1 CIT-001, citation #1: unknown field 'page'"),
    "example_not_text": (_set("evidence_examples", ["Memo", 42], code="CIT-001"),
                         "recommendation #1 CIT-001: field 'evidence_examples' item #2 must be text, got int"),
    "year_as_text": (_set("sources", 0, "year", "2019"),
                     "source #1 'alpha_cd_2019': field 'year' must be a whole number, got '2019'"),
    "unknown_source_kind": (_set("sources", 1, "kind", "memo"),
                            "source #2 'beta_fl_2021': field 'kind': unknown kind 'memo' (known: consent_decree, "
                            "settlement_agreement, findings_letter, technical_assistance, mou, guidance)"),
    "name_too_long": (_set("modules", 1, "name", "D" * 201),
                      "module #2 'data': field 'name' is longer than 200 characters"),
    # The module is still declared, so its recommendations are not reported as well.
    "module_with_a_problem": (_set("modules", 0, "name", ""), "module #1 'cit': field 'name' is required"),
    "sources_not_a_list": (_set("sources", "alpha_cd_2019"), "field 'sources' must be a list, got str"),
    "unknown_level_kind": (_set("compliance_scales", 0, "levels", 1, "kind", "maybe"),
                           "compliance scale #1 'simple', level #2 'partial': field 'kind': unknown kind 'maybe' "
                           "(known: unassessed, deferred, rating)"),
    "no_rating_level": (_no_rating_level,
                        "compliance scale #1 'simple': field 'levels' needs at least one level of kind 'rating'"),
    "duplicate_level": (_set("compliance_scales", 0, "levels", 2, "key", "partial"),
                        "compliance scale #1 'simple', level 'partial': field 'key' appears more than once "
                        "(keys must be unique)"),
    "unknown_top_level_field": (_set("colour", "blue"), "unknown top-level field 'colour'"),
    "bad_version": (_set("version", 0), "field 'version' must be 1 or more, got 0"),
}

BROKEN_YAML = """\
version: 1
modules:
- key: cit
  name: Crisis Intervention Teams
  description: How the CIT program is organised.
 position: 3
recommendations: []
"""


def _loaded(db, tmp_path):
    """A loaded, committed catalog, so an invalid load has something it could damage."""
    load_catalog(write_catalog(tmp_path, catalog_data(), "good.yaml"))
    db.session.commit()
    return state(db)


def _bad_file(tmp_path, case):
    """A file with changes that would be written if the load went ahead, plus one problem."""
    data = catalog_data()
    rec_by_id(data, "CIT-001")["summary"] = "A change that must not be written."
    data["recommendations"].append({"id": "DAT-002", "module": "data", "title": "New", "summary": "New.",
                                    "citations": [{"source": "alpha_cd_2019", "paragraphs": "¶ 9",
                                                   "basis": "primary_text"}]})
    INVALID[case][0](data)
    return write_catalog(tmp_path, data, "bad.yaml")


@pytest.mark.parametrize("case", list(INVALID))
def test_invalid_catalog_service_changes_nothing(db, tmp_path, case):
    before = _loaded(db, tmp_path)
    path = _bad_file(tmp_path, case)

    with pytest.raises(CatalogError) as info:
        load_catalog(path)
    err = info.value
    assert err.path == str(path)
    assert err.problems == [INVALID[case][1]]
    assert str(err) == f"{path}: {INVALID[case][1]}"
    assert not db.session.new and not db.session.dirty
    assert state(db) == before
    db.session.rollback()
    assert state(db) == before


@pytest.mark.parametrize("case", ["unknown_module", "duplicate_id", "bad_effective_date", "bad_basis"])
def test_invalid_catalog_cli_changes_nothing(app, db, tmp_path, case):
    before = _loaded(db, tmp_path)
    path = _bad_file(tmp_path, case)

    result = app.test_cli_runner().invoke(args=["catalog", "load", str(path)])
    assert result.exit_code == 1, result.output
    assert "Catalog not loaded; nothing was changed. 1 problem(s):" in result.output
    assert f"{path}: {INVALID[case][1]}" in result.output
    db.session.rollback()
    assert state(db) == before


def test_broken_yaml_names_file_and_line(app, db, tmp_path):
    before = _loaded(db, tmp_path)
    path = tmp_path / "broken.yaml"
    path.write_text(BROKEN_YAML, encoding="utf-8")

    with pytest.raises(CatalogError) as info:
        load_catalog(path)
    assert len(info.value.problems) == 1
    problem = info.value.problems[0]
    assert problem.startswith("line 6, column 2: not valid YAML ("), problem  # the badly indented line
    assert str(info.value) == f"{path}: {problem}"

    result = app.test_cli_runner().invoke(args=["catalog", "load", str(path)])
    assert result.exit_code == 1
    assert "nothing was changed" in result.output and f"{path}: line 6, column 2" in result.output
    assert state(db) == before


def test_several_problems_are_all_reported(db, tmp_path):
    data = catalog_data()
    _bad_basis(data)
    _bad_deadline(data)
    _unknown_source(data)
    with pytest.raises(CatalogError) as info:
        load_catalog(write_catalog(tmp_path, data))
    # Schema problems first, then the checks across records (which still see the valid CIT-002).
    assert info.value.problems == [INVALID["bad_basis"][1], INVALID["bad_deadline"][1], INVALID["unknown_source"][1]]
    assert count(db, Recommendation) == 0 and count(db, AuditEvent) == 0


def test_missing_file_is_a_catalog_error(app, tmp_path):
    path = tmp_path / "nope.yaml"
    with pytest.raises(CatalogError) as info:
        load_catalog(path)
    assert str(path) in str(info.value) and "cannot read file" in str(info.value)
    result = app.test_cli_runner().invoke(args=["catalog", "load", str(path)])
    assert result.exit_code == 1 and "nothing was changed" in result.output


# --- reloading ------------------------------------------------------------------------------------


def test_reloading_same_file_changes_nothing(db, tmp_path):
    path = write_catalog(tmp_path, catalog_data())
    load_catalog(path)
    db.session.commit()
    events = count(db, AuditEvent)
    assert events == 1
    snapshot = state(db)

    report = load_catalog(path)
    db.session.commit()
    assert (report.added, report.updated, report.retired, report.unchanged) == ([], [], [], 3)
    assert report.other_changes == 0 and not report.changed
    assert count(db, AuditEvent) == events
    assert state(db) == snapshot


def test_edit_summary_and_citation_counts_as_update(db, tmp_path):
    data = catalog_data()
    load_catalog(write_catalog(tmp_path, data))
    db.session.commit()
    cit1_id = get_rec(db, "CIT-001").id

    rec_by_id(data, "CIT-001")["summary"] = "Appoint a sworn commander to run the program."
    report = load_catalog(write_catalog(tmp_path, data))
    db.session.commit()
    assert (report.added, report.updated, report.retired, report.unchanged) == ([], ["CIT-001"], [], 2)
    db.session.expire_all()
    cit1 = get_rec(db, "CIT-001")
    assert cit1.summary == "Appoint a sworn commander to run the program." and cit1.id == cit1_id
    assert count(db, AuditEvent) == 2

    rec_by_id(data, "CIT-002")["citations"][0]["paragraphs"] = "¶¶ 140-143"
    report = load_catalog(write_catalog(tmp_path, data))
    db.session.commit()
    assert (report.added, report.updated, report.retired, report.unchanged) == ([], ["CIT-002"], [], 2)
    db.session.expire_all()
    assert [c.paragraphs for c in get_rec(db, "CIT-002").citations] == ["¶¶ 140-143"]
    assert count(db, Citation) == 4  # replaced, not duplicated
    last = db.session.execute(sa.select(AuditEvent).order_by(AuditEvent.id.desc()).limit(1)).scalar_one()
    assert last.action == "catalog.load" and last.after["updated"] == ["CIT-002"]


def test_edited_sources_scales_and_deadlines_are_updated_in_place(db, tmp_path):
    data = catalog_data()
    load_catalog(write_catalog(tmp_path, data))
    db.session.commit()
    ids = {"source": db.session.execute(sa.select(Source.id).where(Source.key == "beta_fl_2021")).scalar_one(),
           "scale": db.session.execute(sa.select(ComplianceScale.id)).scalar_one()}

    data["sources"][1]["effective_date"] = "2021-07-01"
    levels = data["compliance_scales"][0]["levels"]
    levels[1]["label"] = "Partial compliance (some parts)"
    levels.append({"key": "deferred", "label": "Evaluation deferred", "kind": "deferred"})
    rec_by_id(data, "CIT-002")["typical_deadline"] = "6 months"
    report = load_catalog(write_catalog(tmp_path, data))
    db.session.commit()
    assert (report.added, report.updated, report.retired, report.unchanged) == ([], ["CIT-002"], [], 2)
    assert report.other_changes == 3  # the source, the edited level and the new level
    db.session.expire_all()
    beta = db.session.get(Source, ids["source"])
    assert beta.key == "beta_fl_2021" and beta.effective_date == date(2021, 7, 1)
    scale = db.session.get(ComplianceScale, ids["scale"])
    assert [(lvl.key, lvl.label, lvl.kind, lvl.position) for lvl in scale.levels] == [
        ("not_assessed", "Not yet assessed", "unassessed", 0),
        ("partial", "Partial compliance (some parts)", "rating", 1),
        ("full", "Full compliance", "rating", 2),
        ("deferred", "Evaluation deferred", "deferred", 3)]
    cit2 = get_rec(db, "CIT-002")
    assert (cit2.deadline_amount, cit2.deadline_unit, cit2.catalog_version) == (6, "months", 1)
    assert count(db, Source) == 2 and count(db, ComplianceScale) == 1 and count(db, Citation) == 4
    assert [e.action for e in db.session.execute(sa.select(AuditEvent).order_by(AuditEvent.id)).scalars()] == [
        "catalog.load", "catalog.load"]


def test_removed_recommendation_is_retired_then_restored(db, tmp_path):
    data = catalog_data()
    load_catalog(write_catalog(tmp_path, data))
    db.session.commit()
    cit2 = get_rec(db, "CIT-002")
    agency = make_agency()
    req = make_requirement(agency, module=cit2.module, code="CIT-002", title="Refresher training",
                           recommendation_id=cit2.id)
    db.session.commit()
    req_before = (req.id, req.recommendation_id, req.code, req.title, req.status, req.row_version,
                  req.updated_at)

    smaller = catalog_data()
    smaller["recommendations"] = [r for r in smaller["recommendations"] if r["id"] != "CIT-002"]
    report = load_catalog(write_catalog(tmp_path, smaller))
    db.session.commit()
    assert (report.added, report.updated, report.retired, report.unchanged) == ([], [], ["CIT-002"], 2)
    db.session.expire_all()
    cit2 = get_rec(db, "CIT-002")
    assert cit2.retired_at is not None
    assert len(cit2.citations) == 1  # kept with the row
    assert count(db, Recommendation) == 3
    req = db.session.get(Requirement, req_before[0])
    assert (req.id, req.recommendation_id, req.code, req.title, req.status, req.row_version,
            req.updated_at) == req_before

    # Loading the smaller file again retires nothing more.
    report = load_catalog(write_catalog(tmp_path, smaller))
    db.session.commit()
    assert (report.retired, report.unchanged, report.changed) == ([], 2, False)

    report = load_catalog(write_catalog(tmp_path, data))
    db.session.commit()
    assert (report.added, report.updated, report.retired, report.unchanged) == ([], ["CIT-002"], [], 2)
    db.session.expire_all()
    assert get_rec(db, "CIT-002").retired_at is None
    assert db.session.get(Requirement, req_before[0]).recommendation_id == cit2.id


# --- the real catalog -----------------------------------------------------------------------------


def seed_path(app):
    path = Path(app.config["SEED_DIR"]) / "catalog.yaml"
    return path if path.exists() else REPO_SEED


def load_seed(app, db):
    report = load_catalog(seed_path(app))
    db.session.commit()
    return report


def test_real_seed_catalog_loads(app, db):
    report = load_seed(app, db)
    assert len(report.added) >= 60 and report.modules == 5 and report.sources >= 10
    assert report.sources == count(db, Source)
    modules = db.session.execute(sa.select(Module)).scalars().all()
    assert {m.key for m in modules} == {"diversion", "cit", "data", "advisory", "additional"}
    recs = db.session.execute(
        sa.select(Recommendation).options(sa.orm.selectinload(Recommendation.citations))).scalars().all()
    assert len(recs) == len(report.added) >= 60
    per_module = {m.key: sum(1 for r in recs if r.module_id == m.id) for m in modules}
    assert all(n >= 8 for n in per_module.values()), per_module
    without = [r.code for r in recs if not r.citations]
    assert without == []
    assert all(c.basis in CITATION_BASIS for r in recs for c in r.citations)

    again = load_catalog(seed_path(app))
    assert (again.added, again.updated, again.retired, again.changed) == ([], [], [], False)


# Dates as the shared reference catalog has them (issue 12 §6): effective date, and what the note must say.
DECREE_DATES = {
    "chicago_cd_2019": (date(2019, 3, 1), "Approved by the court on 2019-01-31; in effect from 2019-03-01"),
    "baltimore_cd_2017": (date(2017, 4, 7), "Entered by the court on 2017-04-07."),
    "cleveland_sa_2015": (date(2015, 6, 12), "Entered by the court on 2015-06-12"),
    "portland_sa_2014": (date(2014, 8, 29), "entered by the court on 2014-08-29 (Dkt. 86)"),
    "ferguson_cd_2016": (date(2016, 4, 19), "Approved by the court on 2016-04-19"),
}


def test_seed_decree_dates_are_the_corrected_ones(app, db):
    load_seed(app, db)
    sources = {s.key: s for s in db.session.execute(sa.select(Source)).scalars()}
    for key, (effective, note) in DECREE_DATES.items():
        assert sources[key].effective_date == effective, key
        assert note in sources[key].effective_date_note, key
    text = seed_path(app).read_text(encoding="utf-8")
    for stale in ("effective_date: '2019-01-31'", "Entered in April 2017", "Entered in March 2016",
                  "approved it in 2014 (exact date not seen)"):
        assert stale not in text, stale


def test_seed_cleveland_scale_is_named_by_its_levels(app, db):
    load_seed(app, db)
    scale = db.session.execute(sa.select(ComplianceScale).where(ComplianceScale.key == "cleveland")).scalar_one()
    assert scale.name == "Cleveland-style scale (four rating levels, plus not yet assessed and evaluation deferred)"
    assert [(lvl.key, lvl.kind) for lvl in scale.levels] == [
        ("not_assessed", "unassessed"), ("evaluation_deferred", "deferred"), ("non_compliance", "rating"),
        ("partial", "rating"), ("operational", "rating"), ("general", "rating")]


def test_garbage_collector_is_back_on_after_a_load_good_or_bad(db, tmp_path):
    load_catalog(write_catalog(tmp_path, catalog_data()))
    assert gc.isenabled()
    with pytest.raises(CatalogError):
        load_catalog(tmp_path / "missing.yaml")
    assert gc.isenabled()


def test_catalog_is_parsed_with_the_c_yaml_loader_when_there_is_one():
    assert YAML_LOADER is getattr(yaml, "CSafeLoader", yaml.SafeLoader)


# --- pages ----------------------------------------------------------------------------------------


def test_catalog_pages(app, db, client):
    load_seed(app, db)
    modules = db.session.execute(sa.select(Module).order_by(Module.position)).scalars().all()

    page = client.get("/catalog/")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    for m in modules:
        assert str(escape(m.name)) in html, m.name

    cit_codes = db.session.execute(
        sa.select(Recommendation.code).join(Module).where(Module.key == "cit")).scalars().all()
    assert cit_codes
    page = client.get("/catalog/cit")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    for code in cit_codes:
        assert f'href="/catalog/recommendations/{code}"' in html
    assert 'href="/catalog/recommendations/DIV-001"' not in html

    # A recommendation page per citation basis shows that citation with its verification label.
    for basis, label in CITATION_BASIS.items():
        citation = db.session.execute(
            sa.select(Citation).where(Citation.basis == basis).order_by(Citation.id).limit(1)
        ).scalar_one_or_none()
        if citation is None:
            continue
        code = citation.recommendation.code
        page = client.get(f"/catalog/recommendations/{code}")
        assert page.status_code == 200
        html = page.get_data(as_text=True)
        assert f'tracker-basis--{basis}">{label}</span>' in html, (code, label)
        assert str(escape(citation.paragraphs)) in html
        assert str(escape(citation.source.short_title)) in html
    assert client.get(f"/catalog/recommendations/{cit_codes[0].lower()}").status_code == 200

    assert client.get("/catalog/training").status_code == 404
    assert client.get("/catalog/recommendations/CIT-999").status_code == 404
    assert client.get("/catalog/recommendations/nonsense").status_code == 404


def test_module_page_lists_its_suggested_indicators_and_the_index_counts_them(app, db, client):
    """Issue 14: the catalog's suggested indicators are found where its recommendations are, not only on an
    agency's indicators page; retired ones are not suggested."""
    load_seed(app, db)
    suggested = db.session.execute(sa.select(CatalogIndicator).order_by(CatalogIndicator.name)).scalars().all()
    assert len(suggested) >= 10
    module = db.session.get(Module, suggested[0].module_id)
    retired = suggested[-1]
    retired.retired_at = datetime(2026, 1, 1)
    db.session.commit()

    html = client.get(f"/catalog/{module.key}").get_data(as_text=True)
    section = html.split('<h2 id="indicators">Suggested indicators</h2>', 1)[1]
    for indicator in suggested[:-1]:
        assert f'<th scope="row">{escape(indicator.name)}</th>' in section, indicator.name
    assert str(escape(retired.name)) not in section
    assert "Higher" in section and "Percent" in section

    other = db.session.execute(sa.select(Module).where(Module.id != module.id).limit(1)).scalar_one()
    assert "Suggested indicators" not in client.get(f"/catalog/{other.key}").get_data(as_text=True)
    index = client.get("/catalog/").get_data(as_text=True)
    assert f"<strong>{len(suggested) - 1}</strong> suggested indicators" in index


def test_verification_labels_for_each_basis(db, client, tmp_path):
    load_catalog(write_catalog(tmp_path, catalog_data()))
    db.session.commit()
    html = client.get("/catalog/recommendations/CIT-001").get_data(as_text=True)
    assert "Primary text read" in html and "Secondary description" in html and "Unverified" not in html
    assert "180 days after the effective date" in html and "Appointment memo" in html
    html = client.get("/catalog/recommendations/CIT-002").get_data(as_text=True)
    assert "Unverified" in html and "Annual" in html


def test_retired_recommendation_is_not_listed(app, db, client):
    load_seed(app, db)
    cit = db.session.execute(
        sa.select(Recommendation).join(Module).where(Module.key == "cit").order_by(Recommendation.code)
    ).scalars().all()
    retired, kept = cit[0], cit[1]
    retired.retired_at = utcnow()
    db.session.commit()

    html = client.get("/catalog/cit").get_data(as_text=True)
    assert f'href="/catalog/recommendations/{retired.code}"' not in html
    assert f'href="/catalog/recommendations/{kept.code}"' in html
    index = client.get("/catalog/").get_data(as_text=True)
    assert f"<strong>{len(cit) - 1}</strong> recommendations" in index
    # Still reachable directly, marked as retired.
    page = client.get(f"/catalog/recommendations/{retired.code}")
    assert page.status_code == 200 and "Retired from the catalog" in page.get_data(as_text=True)
    api = client.get("/api/v1/catalog").get_json()
    codes = {r["id"] for m in api["modules"] for r in m["recommendations"]}
    assert retired.code not in codes and kept.code in codes


# --- API ------------------------------------------------------------------------------------------


def test_api_catalog(app, db, client):
    load_seed(app, db)
    active = db.session.execute(
        sa.select(sa.func.count()).select_from(Recommendation).where(Recommendation.retired_at.is_(None))
    ).scalar_one()

    response = client.get("/api/v1/catalog")
    assert response.status_code == 200 and response.mimetype == "application/json"
    body = response.get_json()
    assert [m["key"] for m in body["modules"]] == ["diversion", "cit", "data", "advisory", "additional"]
    recs = [r for m in body["modules"] for r in m["recommendations"]]
    assert len(recs) == active
    assert len({r["id"] for r in recs}) == active
    for rec in recs:
        assert rec["id"] and rec["title"] and rec["summary"]
        assert isinstance(rec["citations"], list) and rec["citations"]
        for c in rec["citations"]:
            assert c["source"] and c["paragraphs"] and c["basis"] in CITATION_BASIS
    module_of = dict(db.session.execute(sa.select(Recommendation.code, Module.key).join(Module)).all())
    for module in body["modules"]:
        assert module["name"] and module["recommendations"]
        assert {module_of[r["id"]] for r in module["recommendations"]} == {module["key"]}
        codes = [r["id"] for r in module["recommendations"]]
        assert codes == sorted(codes)

    db.session.expire_all()
    rec = get_rec(db, recs[0]["id"])
    assert recs[0]["citations"][0]["source"] == rec.citations[0].source.key
    assert recs[0]["citations"][0]["paragraphs"] == rec.citations[0].paragraphs


def test_api_catalog_small(db, client, tmp_path):
    load_catalog(write_catalog(tmp_path, catalog_data()))
    db.session.commit()
    body = client.get("/api/v1/catalog").get_json()
    by_id = {r["id"]: r for m in body["modules"] for r in m["recommendations"]}
    assert by_id["CIT-001"]["typical_deadline"] == "180 days"
    assert by_id["CIT-002"]["cadence"] == "annual"
    assert by_id["CIT-001"]["evidence_examples"] == ["Appointment memo", "Organisation chart"]
    assert by_id["CIT-001"]["citations"] == [
        {"source": "alpha_cd_2019", "source_title": "Consent Decree, United States v. City of Alpha",
         "paragraphs": "¶ 131", "basis": "primary_text", "note": "Read in the decree text."},
        {"source": "beta_fl_2021", "source_title": "Findings letter on the Beta Police Department",
         "paragraphs": "p. 4", "basis": "secondary_description", "note": None},
    ]


# --- query counts ---------------------------------------------------------------------------------


def _many(n):
    data = catalog_data()
    data["recommendations"] = [
        {"id": f"CIT-{i:03d}", "module": "cit", "title": f"Recommendation {i}", "summary": f"Do thing {i}.",
         "typical_deadline": "90 days" if i % 2 else None,
         "citations": [
             {"source": "alpha_cd_2019", "paragraphs": f"¶ {i}", "basis": "primary_text"},
             {"source": "beta_fl_2021", "paragraphs": f"p. {i}", "basis": "secondary_description"},
         ]}
        for i in range(1, n + 1)
    ] + [{"id": "DAT-001", "module": "data", "title": "Data", "summary": "Data.",
          "citations": [{"source": "beta_fl_2021", "paragraphs": "p. 1", "basis": "unverified"}]}]
    return data


def _queries(db, client, count_queries, url):
    db.session.commit()
    assert client.get(url).status_code == 200  # warm up
    with count_queries() as n:
        response = client.get(url)
    assert response.status_code == 200
    return n.count


@pytest.mark.parametrize("url", ["/catalog/cit", "/api/v1/catalog", "/catalog/"])
def test_query_count_does_not_grow_with_catalog(db, client, count_queries, tmp_path, url):
    load_catalog(write_catalog(tmp_path, _many(3)))
    small = _queries(db, client, count_queries, url)
    load_catalog(write_catalog(tmp_path, _many(30)))
    large = _queries(db, client, count_queries, url)
    assert count(db, Recommendation) == 31
    assert small == large, (small, large)
    assert small <= 6
