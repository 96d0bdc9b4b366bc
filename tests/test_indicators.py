"""Outcome indicators (issue 14 §3): suggested in the catalog, adopted or defined by the agency with a target,
values typed or imported (checked whole: one bad row and nothing is written), the indicator page's chart and
table, the dashboard panel, the public page, the API and the exports."""
import csv
import io
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from openpyxl import Workbook, load_workbook

from tests.factories import make_agency, make_module, make_requirement, make_user
from tracker.models import AuditEvent, CatalogIndicator, Indicator, IndicatorValue
from tracker.services import catalog, indicators

SEED = Path(__file__).resolve().parents[1] / "seed" / "catalog.yaml"
BASE = "/agencies/harbor/indicators"


def _count(db, model, *where):
    db.session.commit()
    return db.session.scalar(sa.select(sa.func.count()).select_from(model).where(*where))


@pytest.fixture
def world(db):
    data = make_module("data", "Data Collection", 1)
    a = make_agency(slug="harbor", name="Harbor City PD", public_enabled=True)
    b = make_agency(slug="other", name="Other Town PD")
    req = make_requirement(a, module=data, code="DATA-001", title="Crisis call data")
    users = {
        "officer": make_user("officer@example.test", role="officer", agency=a, name="Olive Officer"),
        "monitor": make_user("monitor@example.test", role="monitor", agency=a, name="Mona Monitor"),
        "committee": make_user("committee@example.test", role="committee", agency=a, name="Cole Committee"),
        "admin": make_user("admin@example.test", is_admin=True, name="Ada Admin"),
        "outsider": make_user("outsider@example.test", role="officer", agency=b, name="Otto Outside"),
    }
    suggested = CatalogIndicator(key="cit-on-scene", module_id=data.id, name="Crisis calls with a CIT officer on scene",
                                 definition="Of the crisis calls, the share with a CIT-certified officer on scene.",
                                 numerator="Crisis calls with a CIT officer on scene", denominator="All crisis calls",
                                 unit="percent", direction="up")
    db.session.add(suggested)
    db.session.commit()
    return {"a": a, "b": b, "req": req, "users": users, "data": data}


def _login(auth, world, role):
    if auth.token:
        auth.logout()
    assert auth.login(world["users"][role].email).status_code == 303


def _indicator(db, world, **values):
    ind = indicators.create_indicator(world["a"], {
        "key": "cit-on-scene", "name": "Crisis calls with a CIT officer on scene", "unit": "percent",
        "direction": "up", "frequency": "quarter", "target_value": "75", **values}, actor=world["users"]["officer"])
    db.session.commit()
    return ind


def _csv(rows, header=("indicator", "period", "value", "numerator", "denominator", "breakdown")):
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode()


def _import(auth, data, filename="values.csv"):
    return auth.post(f"{BASE}/import", {"file": (io.BytesIO(data), filename)}, content_type="multipart/form-data")


EIGHT_QUARTERS = [("cit-on-scene", f"{2024 + i // 4}-Q{i % 4 + 1}", "", str(n), "200", "")
                  for i, n in enumerate((60, 70, 84, 96, 104, 118, 130, 142))]


# --- the catalog's suggestions ------------------------------------------------------------------------

def test_the_catalog_suggests_at_least_ten_indicators_for_data_collection(db):
    catalog.load_catalog(SEED)
    db.session.commit()
    rows = db.session.execute(sa.select(CatalogIndicator)).scalars().all()
    assert len(rows) >= 10
    for row in rows:
        assert row.definition and row.unit in ("percent", "count", "minutes", "rate")
        assert row.direction in ("up", "down")
        if row.unit in ("percent", "rate"):
            assert row.numerator and row.denominator, row.key
    keys = {r.key for r in rows}
    assert {"cit-on-scene", "crisis-arrest", "crisis-response-time", "repeat-contacts"} <= keys


def test_a_catalog_indicator_with_an_unknown_module_is_refused(tmp_path):
    bad = tmp_path / "catalog.yaml"
    bad.write_text("modules:\n- key: data\n  name: Data\n  description: d\n  position: 1\n"
                   "indicators:\n- key: x\n  module: nope\n  name: X\n  definition: d\n  unit: count\n"
                   "  direction: up\n", encoding="utf-8")
    with pytest.raises(catalog.CatalogError) as exc:
        catalog.load_catalog(bad)
    assert "unknown module key 'nope'" in str(exc.value)


def test_officers_adopt_a_suggestion_and_define_their_own(client, auth, db, world):
    _login(auth, world, "officer")
    page = client.get(BASE).get_data(as_text=True)
    assert "Adopt a suggested indicator" in page and "Crisis calls with a CIT officer on scene" in page
    r = auth.post(f"{BASE}/adopt", {"catalog_key": "cit-on-scene", "frequency": "quarter"})
    assert r.status_code == 303
    adopted = db.session.execute(sa.select(Indicator)).scalar_one()
    assert (adopted.key, adopted.unit, adopted.direction, adopted.numerator) == (
        "cit-on-scene", "percent", "up", "Crisis calls with a CIT officer on scene")
    assert "Every suggested indicator is adopted" in client.get(BASE).get_data(as_text=True)
    r = auth.post(BASE, {"key": "median-wait", "name": "Median wait for a crisis team", "unit": "minutes",
                         "direction": "down", "frequency": "month", "target_value": "15"})
    assert r.status_code == 303
    assert _count(db, Indicator) == 2
    assert _count(db, AuditEvent, AuditEvent.action.in_(("indicator.adopt", "indicator.create"))) == 2


@pytest.mark.parametrize(("values", "message"), [
    ({"key": "Bad Key", "name": "X"}, "lower-case letters"),
    ({"key": "x", "name": ""}, "Give the indicator a name"),
    ({"key": "x", "name": "X", "target_value": "120"}, "over 100%"),
    ({"key": "x", "name": "X", "target_value": "lots"}, "is not a number"),
    ({"key": "x", "name": "X", "unit": "furlongs"}, "Choose one of"),
])
def test_a_bad_indicator_names_the_field_and_writes_nothing(client, auth, db, world, values, message):
    _login(auth, world, "officer")
    r = auth.post(BASE, {"unit": "percent", "direction": "up", "frequency": "quarter", **values})
    assert r.status_code == 422 and message in r.get_data(as_text=True)
    assert _count(db, Indicator) == 0


@pytest.mark.parametrize("role", ["monitor", "committee"])
def test_monitors_and_committee_members_read_but_do_not_write(client, auth, db, world, role):
    ind = _indicator(db, world)
    _login(auth, world, role)
    page = client.get(f"{BASE}/{ind.id}").get_data(as_text=True)
    assert ind.name in page and "Enter a value" not in page and "Adopt" not in client.get(BASE).get_data(as_text=True)
    assert auth.post(f"{BASE}/{ind.id}/values", {"period": "2025-Q1", "value": "50"}).status_code == 403
    assert auth.post(BASE, {"key": "x", "name": "X"}).status_code == 403
    assert client.get(f"{BASE}/import").status_code == 403
    assert _count(db, IndicatorValue) == 0


def test_outsiders_get_404(client, auth, db, world):
    ind = _indicator(db, world)
    _login(auth, world, "outsider")
    assert client.get(BASE).status_code == 404
    assert client.get(f"{BASE}/{ind.id}").status_code == 404
    assert client.get("/api/v1/agencies/harbor/indicators").status_code == 404
    # Their own agency's slug with this agency's indicator id: still 404.
    assert client.get(f"/agencies/other/indicators/{ind.id}").status_code == 404


# --- values -------------------------------------------------------------------------------------------

def test_a_value_typed_or_computed_from_numerator_and_denominator(client, auth, db, world):
    ind = _indicator(db, world)
    _login(auth, world, "officer")
    assert auth.post(f"{BASE}/{ind.id}/values", {"period": "2025-Q1", "value": "40"}).status_code == 303
    assert auth.post(f"{BASE}/{ind.id}/values", {"period": "2025 Q2", "numerator_value": "105",
                                                  "denominator_value": "200"}).status_code == 303
    rows = db.session.execute(sa.select(IndicatorValue).order_by(IndicatorValue.period_start)).scalars().all()
    assert [(r.period_start, Decimal(str(r.value))) for r in rows] == [
        (date(2025, 1, 1), Decimal(40)), (date(2025, 4, 1), Decimal("52.5"))]
    # Typed again for the same period: replaced, not added.
    assert auth.post(f"{BASE}/{ind.id}/values", {"period": "2025-Q2", "value": "55"}).status_code == 303
    assert _count(db, IndicatorValue) == 2
    assert _count(db, AuditEvent, AuditEvent.action == "indicator.value") == 3


@pytest.mark.parametrize(("values", "message"), [
    ({"period": "2025-03", "value": "40"}, "is a month but this indicator is quarterly"),
    ({"period": "spring", "value": "40"}, "is not a period like 2025-03"),
    ({"period": "2025-Q1", "value": "140"}, "over 100%"),
    ({"period": "2025-Q1", "value": "-3"}, "is negative"),
    ({"period": "2025-Q1", "numerator_value": "5", "denominator_value": "0"}, "the denominator is 0"),
    ({"period": "2025-Q1", "numerator_value": "5"}, "give both the numerator and the denominator"),
    ({"period": "2025-Q1"}, "give a value, or a numerator and a denominator"),
])
def test_a_bad_value_names_the_field_and_writes_nothing(client, auth, db, world, values, message):
    ind = _indicator(db, world)
    _login(auth, world, "officer")
    r = auth.post(f"{BASE}/{ind.id}/values", values)
    assert r.status_code == 422
    assert message.lower() in r.get_data(as_text=True).lower()
    assert _count(db, IndicatorValue) == 0


def test_the_indicator_page_shows_chart_table_target_and_change(client, auth, db, world):
    ind = _indicator(db, world)
    for period, value in (("2025-Q1", "40"), ("2025-Q2", "52.5")):
        indicators.enter_value(ind, {"period": period, "value": value}, actor=world["users"]["officer"])
    indicators.enter_value(ind, {"period": "2025-Q2", "value": "61", "breakdown": "District 3"},
                           actor=world["users"]["officer"])
    db.session.commit()
    _login(auth, world, "committee")
    page = client.get(f"{BASE}/{ind.id}").get_data(as_text=True)
    assert "<svg" in page and "<script" not in page.split("<main")[1].split("</main>")[0]
    assert "Crisis calls with a CIT officer on scene: Q1 2025 40%, Q2 2025 52.5%; target 75%" in page  # SVG title
    assert "Latest: <strong>52.5%</strong> (Q2 2025)" in page
    assert "Target: <strong>75%</strong>" in page and "Not yet at target" in page
    assert "+12.5 points" in page and "(better)" in page
    assert "<th scope=\"row\">Q1 2025</th><td>40%</td>" in page  # the data table beside the chart
    assert "District 3" in page and "61%" in page  # the breakdown table


def test_the_chart_is_drawn_at_a_readable_size():
    ind = Indicator(key="x", name="X", unit="minutes", direction="down", frequency="month", target_value=15)
    summary = indicators.Summary(ind, points=[(date(2025, m, 1), Decimal(v)) for m, v in ((1, 22), (2, 18))])
    c = indicators.chart(summary)
    assert (c["width"], c["height"]) == (720, 300)
    assert [t for _y, t in c["ticks"]] == ["0 min", "6.3 min", "12.5 min", "18.8 min", "25 min"]
    assert c["target_text"] == "15 min" and c["target_y"] < c["bottom"]
    assert [label for _x, label in c["labels"]] == ["Jan 2025", "Feb 2025"]
    assert summary.meets_target is False and summary.improved is True


def test_requirements_the_indicator_evidences(client, auth, db, world):
    ind = _indicator(db, world)
    _login(auth, world, "officer")
    r = auth.post(f"{BASE}/{ind.id}", {"name": ind.name, "unit": "percent", "direction": "up",
                                        "frequency": "quarter", "target_value": "80",
                                        "requirement_ids": [str(world["req"].id)]})
    assert r.status_code == 303
    db.session.expire_all()
    ind = db.session.get(Indicator, ind.id)
    assert [q.code for q in ind.requirements] == ["DATA-001"] and Decimal(str(ind.target_value)) == 80
    event = db.session.execute(sa.select(AuditEvent).where(AuditEvent.action == "indicator.update")).scalar_one()
    assert event.before == {"target_value": "75", "requirements": []}
    assert event.after == {"target_value": "80", "requirements": ["DATA-001"]}


def test_the_requirement_page_lists_the_indicators_that_evidence_it(client, auth, db, world):
    """Both ways: the indicator names its requirements, and the requirement's page names its indicators with
    the latest value against the target."""
    ind = _indicator(db, world)
    other = _indicator(db, world, key="arrests", name="Crisis calls ending in arrest", direction="down",
                       target_value="")
    for period, value in (("2025-Q1", "40"), ("2025-Q2", "52.5")):
        indicators.enter_value(ind, {"period": period, "value": value}, actor=world["users"]["officer"])
    db.session.commit()
    form = {"name": ind.name, "unit": "percent", "direction": "up", "frequency": "quarter", "target_value": "75"}
    _login(auth, world, "officer")
    assert auth.post(f"{BASE}/{ind.id}", {**form, "requirement_ids": [str(world["req"].id)]}).status_code == 303
    page_url = f"/agencies/harbor/requirements/{world['req'].id}"

    _login(auth, world, "committee")
    section = client.get(page_url).get_data(as_text=True).split('<h2 id="indicators">Indicators</h2>', 1)[1]
    section = section.split("<h2", 1)[0]
    assert f'href="{BASE}/{ind.id}">Crisis calls with a CIT officer on scene</a>' in section
    assert "<td>52.5% (Q2 2025)</td>" in section and "<td>75%</td>" in section
    assert "+12.5 points" in section and "Not yet at target" in section
    assert other.name not in section

    _login(auth, world, "officer")
    assert auth.post(f"{BASE}/{ind.id}", form).status_code == 303
    section = client.get(page_url).get_data(as_text=True).split('<h2 id="indicators">Indicators</h2>', 1)[1]
    assert section.split("<h2", 1)[0].strip().startswith("<p>No indicator is linked to this requirement.")


# --- import -------------------------------------------------------------------------------------------

def test_eight_quarters_imported_one_bad_row_writes_nothing_then_chart_dashboard_and_api_agree(
        client, auth, db, world):
    ind = _indicator(db, world)
    _login(auth, world, "officer")
    rows = list(EIGHT_QUARTERS)
    rows[5] = ("cit-on-scene", "2025-Q2", "", "118", "0", "")
    r = _import(auth, _csv(rows))
    assert r.status_code == 422
    page = r.get_data(as_text=True)
    assert "Nothing was imported from values.csv" in page and "row 7, column numerator/denominator" in page
    assert _count(db, IndicatorValue) == 0 and _count(db, AuditEvent, AuditEvent.action == "indicator.import") == 0

    r = _import(auth, _csv(EIGHT_QUARTERS))
    assert r.status_code == 303, r.get_data(as_text=True)[-3000:]
    follow = client.get(r.headers["Location"]).get_data(as_text=True)
    assert "8 values added, 0 updated, 0 unchanged" in follow
    expected = [float(Decimal(n) * 100 / 200) for n in (60, 70, 84, 96, 104, 118, 130, 142)]
    page = client.get(f"{BASE}/{ind.id}").get_data(as_text=True)
    assert "Latest: <strong>71%</strong> (Q4 2025)" in page and "+6 points" in page and "Not yet at target" in page
    assert page.count('class="tracker-chart__dot"') == 8
    dashboard = client.get("/agencies/harbor/dashboard").get_data(as_text=True)
    assert "Indicators" in dashboard and "71%" in dashboard and "+6 points" in dashboard
    api = client.get("/api/v1/agencies/harbor/indicators").json["items"][0]
    assert [v["value"] for v in api["values"]] == expected
    assert api["latest"] == {"period": "2025-Q4", "value": 71.0} and api["target"] == 75.0
    assert api["change"] == 6.0 and api["meets_target"] is False
    # Imported again: nothing changes.
    r = _import(auth, _csv(EIGHT_QUARTERS))
    assert "0 values added, 0 updated, 8 unchanged" in client.get(r.headers["Location"]).get_data(as_text=True)


@pytest.mark.parametrize(("rows", "message"), [
    ([("nope", "2025-Q1", "40", "", "", "")], "row 2, column indicator: 'nope' is not one of this agency's"),
    ([("cit-on-scene", "2025-01", "40", "", "", "")], "row 2, column period: '2025-01' is a month"),
    ([("cit-on-scene", "2025-Q1", "40", "", "", ""), ("cit-on-scene", "2025-Q1", "41", "", "", "")],
     "row 3: cit-on-scene 2025-Q1 is also on row 2"),
    ([("cit-on-scene", "2025-Q1", "forty", "", "", "")], "row 2, column value: value 'forty' is not a number"),
    ([("cit-on-scene", "2025-Q1", "40", "50", "100", "")], "does not match numerator"),
])
def test_import_names_the_row_and_writes_nothing(client, auth, db, world, rows, message):
    _indicator(db, world)
    _login(auth, world, "officer")
    r = _import(auth, _csv([("cit-on-scene", "2024-Q4", "30", "", "", ""), *rows]) if "row 3" not in message
                else _csv(rows))
    page = r.get_data(as_text=True).replace("&#39;", "'")
    assert r.status_code == 422
    assert message.replace("row 2", "row 3") in page if "row 3" not in message else message in page
    assert _count(db, IndicatorValue) == 0


def test_import_refuses_unknown_columns_and_a_missing_period(client, auth, db, world):
    _indicator(db, world)
    _login(auth, world, "officer")
    r = _import(auth, _csv([("cit-on-scene", "40")], header=("indicator", "amount")))
    page = r.get_data(as_text=True)
    assert r.status_code == 422 and "unknown column(s) amount" in page and "missing column(s): period" in page


def test_import_from_xlsx_with_breakdowns(client, auth, db, world):
    ind = _indicator(db, world, key="cit-certified", name="Officers CIT-certified", frequency="month")
    book = Workbook()
    sheet = book.active
    sheet.append(["indicator", "period", "breakdown", "value"])
    for district, value in (("District 1", 40), ("District 2", 55.5)):
        sheet.append(["cit-certified", "2025-03", district, value])
    sheet.append(["cit-certified", "2025-03", None, 47])
    out = io.BytesIO()
    book.save(out)
    _login(auth, world, "officer")
    r = _import(auth, out.getvalue(), "districts.xlsx")
    assert r.status_code == 303
    summary = indicators.summary(db.session.get(Indicator, ind.id))
    assert summary.points == [(date(2025, 3, 1), Decimal(47))]
    assert sorted((b.breakdown, Decimal(str(b.value))) for b in summary.breakdown_rows) == [
        ("District 1", Decimal(40)), ("District 2", Decimal("55.5"))]


def test_the_csv_export_imports_back_unchanged(client, auth, db, world):
    _indicator(db, world)
    _login(auth, world, "officer")
    _import(auth, _csv(EIGHT_QUARTERS))
    exported = client.get(f"{BASE}.csv")
    assert exported.status_code == 200 and exported.mimetype == "text/csv"
    text = exported.get_data(as_text=True).lstrip("\ufeff")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == list(indicators.EXPORT_COLUMNS)
    assert rows[1] == ["cit-on-scene", "Crisis calls with a CIT officer on scene", "2024-Q1", "", "30", "60", "200",
                       "Percent", "75"]
    r = _import(auth, text.encode(), "export.csv")
    assert "0 values added, 0 updated, 8 unchanged" in client.get(r.headers["Location"]).get_data(as_text=True)
    # The XLSX requirement matrix has a sheet of the same values.
    response = client.get("/agencies/harbor/export.xlsx")
    book = load_workbook(io.BytesIO(response.data), read_only=True)
    response.close()
    sheet = list(book["Indicator values"].iter_rows(values_only=True))
    book.close()
    assert list(sheet[0]) == list(indicators.EXPORT_COLUMNS) and len(sheet) == 9


# --- public page and query counts ---------------------------------------------------------------------

def test_only_the_admin_publishes_and_the_public_page_shows_it(client, auth, db, world):
    ind = _indicator(db, world)
    indicators.enter_value(ind, {"period": "2025-Q1", "value": "40"}, actor=world["users"]["officer"])
    db.session.commit()
    assert ind.name not in client.get("/public/harbor").get_data(as_text=True)
    _login(auth, world, "officer")
    assert auth.post(f"{BASE}/{ind.id}/publish", {"public": "y"}).status_code == 403
    _login(auth, world, "admin")
    assert auth.post(f"{BASE}/{ind.id}/publish", {"public": "y"}).status_code == 303
    auth.logout()
    public = client.get("/public/harbor").get_data(as_text=True)
    assert ind.name in public and "40%" in public and "<svg" in public
    assert f"/indicators/{ind.id}" not in public  # no links into the signed-in pages


def test_pages_use_a_fixed_number_of_queries(client, auth, db, world, count_queries, no_page_cache):
    _login(auth, world, "committee")
    ind = _indicator(db, world)
    indicators.enter_value(ind, {"period": "2025-Q1", "value": "40"}, actor=world["users"]["officer"])
    db.session.commit()
    counts = {}
    for label in ("few", "many"):
        with count_queries() as n:
            assert client.get(BASE).status_code == 200
            assert client.get("/agencies/harbor/dashboard").status_code == 200
            assert client.get("/api/v1/agencies/harbor/indicators").status_code == 200
        counts[label] = n.count
        for i in range(6):
            more = indicators.create_indicator(world["a"], {
                "key": f"more-{label}-{i}", "name": f"More {i}", "unit": "count", "direction": "down",
                "frequency": "month"}, actor=world["users"]["officer"])
            for month in range(1, 7):
                indicators.enter_value(more, {"period": f"2025-{month:02d}", "value": str(month)},
                                       actor=world["users"]["officer"])
        db.session.commit()
    assert counts["many"] == counts["few"]
