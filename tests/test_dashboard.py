"""Agency dashboard and cross-agency roll-up: each measure against hand-made data with known counts,
the page's data tables and SVG charts, the module filter (URL and htmx), scoping, and query counts.

The hand-made agency ("Alpha PD") has two modules and two monitoring periods. "today" is the app's
own UTC date, so the due-date windows are exact.

    code  module  status          due      Report 1 (H1)   Report 2 (H2)           evidence (current)
    C1    CIT     implemented     -10      partial         partial -> full (re-rated) submitted, returned (+1 old)
    C2    CIT     in_progress     -5       full            partial                 submitted (+1 superseded returned)
    C3    CIT     not_started     0        -               not yet assessed        accepted
    C4    CIT     not_started     +45      -               evaluation deferred
    C5    CIT     in_progress     +75      -               -
    C6    CIT     not_started     -100     -               full                    (terminated by the court)
    C7    CIT     not_applicable  -3       -               not in compliance
    C8    CIT     in_progress     none     full            -
    T1    TRN     implemented     +20      full            -                       submitted
    T2    TRN     in_progress     +95      -               -

Report 2 is created (and rated) before Report 1, so "latest" can only come from the period dates.
"""
import re
from datetime import date, timedelta
from html.parser import HTMLParser

import pytest

from tests.factories import make_agency, make_module, make_requirement, make_scale, make_user
from tracker.models import ComplianceLevel, Evidence, utcnow
from tracker.services import dashboard, monitoring

HTMX_BODY = {"HX-Request": "true", "HX-Target": "dashboard-body"}
P1_NAME = "Report 1: H1 2025"
P2_NAME = "Report 2: H2 2025"


# --- helpers -------------------------------------------------------------------------------------

class _Tables(HTMLParser):
    """Every <table> of a page as {caption: [[cell text, ...], ...]} (header row included)."""

    def __init__(self):
        super().__init__()
        self.tables, self._table, self._row, self._cell, self._caption = {}, None, None, None, None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self._table = {"caption": "", "rows": []}
        elif tag == "caption" and self._table is not None:
            self._caption = []
        elif tag == "tr" and self._table is not None:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "table" and self._table is not None:
            self.tables[self._table["caption"]] = self._table["rows"]
            self._table = None
        elif tag == "caption" and self._caption is not None:
            self._table["caption"] = " ".join("".join(self._caption).split())
            self._caption = None
        elif tag == "tr" and self._row is not None:
            self._table["rows"].append(self._row)
            self._row = None
        elif tag in ("td", "th") and self._cell is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        elif self._caption is not None:
            self._caption.append(data)


def tables(html):
    parser = _Tables()
    parser.feed(html)
    return parser.tables


def text(html):
    """The page's text with tags removed and whitespace collapsed."""
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def levels_of(agency):
    return {lvl.key: lvl.id for lvl in agency.scale.levels}


# --- the hand-made agency ------------------------------------------------------------------------

@pytest.fixture
def alpha(db):
    today = utcnow().date()
    cit = make_module("cit", "CIT", position=0)
    trn = make_module("trn", "Training", position=1)
    scale = make_scale()
    scale.levels.append(ComplianceLevel(key="deferred", label="Evaluation deferred", kind="deferred", rank=0,
                                        position=4))
    db.session.flush()
    agency = make_agency(slug="agency-a", name="Alpha PD", scale=scale)
    other = make_agency(slug="agency-b", name="Beta PD")
    users = {
        "officer": make_user("officer@example.test", role="officer", agency=agency),
        "monitor": make_user("monitor@example.test", role="monitor", agency=agency),
        "committee": make_user("committee@example.test", role="committee", agency=agency),
        "other": make_user("other@example.test", role="officer", agency=other),
    }
    monitor = users["monitor"]

    def req(code, module, status, due, **kw):
        return make_requirement(agency, module=module, code=code, status=status,
                                due_date=None if due is None else today + timedelta(days=due), **kw)

    r = {
        "C1": req("C1", cit, "implemented", -10), "C2": req("C2", cit, "in_progress", -5),
        "C3": req("C3", cit, "not_started", 0), "C4": req("C4", cit, "not_started", 45),
        "C5": req("C5", cit, "in_progress", 75),
        "C6": req("C6", cit, "not_started", -100, terminated_at=date(2025, 11, 1), termination_ref="Order"),
        "C7": req("C7", cit, "not_applicable", -3), "C8": req("C8", cit, "in_progress", None),
        "T1": req("T1", trn, "implemented", 20), "T2": req("T2", trn, "in_progress", 95),
    }
    lv = levels_of(agency)
    # The later period first, so ids and creation order disagree with the period dates.
    p2 = monitoring.create_period(agency, P2_NAME, date(2025, 7, 1), date(2025, 12, 31), actor=monitor)
    p1 = monitoring.create_period(agency, P1_NAME, date(2025, 1, 1), date(2025, 6, 30), actor=monitor)
    for code, key in (("C1", "partial"), ("C1", "full"), ("C2", "partial"), ("C3", "not_assessed"),
                      ("C4", "deferred"), ("C6", "full"), ("C7", "none")):
        monitoring.record_finding(r[code], p2, lv[key], f"{code} in report 2", actor=monitor)
    for code, key in (("C1", "partial"), ("C2", "full"), ("C8", "full"), ("T1", "full")):
        monitoring.record_finding(r[code], p1, lv[key], f"{code} in report 1", actor=monitor)
    monitoring.file_period(p1, date(2025, 7, 15), "Dkt. 101", actor=monitor)
    monitoring.file_period(p2, date(2026, 1, 15), "Dkt. 102", actor=monitor)  # both reports filed

    def ev(code, state, superseded=False):
        db.session.add(Evidence(requirement_id=r[code].id, kind="link", title=f"{code} {state}",
                                url="https://example.org/e", review_state=state, superseded=superseded,
                                uploaded_by_id=users["officer"].id))

    ev("C1", "submitted"), ev("C1", "returned"), ev("C1", "submitted", superseded=True)
    ev("C2", "submitted"), ev("C2", "returned", superseded=True)
    ev("C3", "accepted"), ev("T1", "submitted")
    # Another agency's evidence and requirements never leak into Alpha's numbers.
    other_req = make_requirement(other, module=cit, code="B1", due_date=today - timedelta(days=1))
    db.session.add(Evidence(requirement_id=other_req.id, kind="link", title="B", url="https://example.org/b"))
    db.session.commit()
    return {"agency": agency, "other": other, "users": users, "reqs": r, "modules": (cit, trn),
            "periods": (p1, p2)}


# --- measures ------------------------------------------------------------------------------------

def test_measures_per_module_and_total(alpha):
    cit, trn = alpha["modules"]
    per_module, total, shown = dashboard.agency_measures(alpha["agency"])
    assert [m.key for m in shown] == ["cit", "trn"]
    c, t = per_module[cit.id], per_module[trn.id]

    # Statuses per module; the terminated C6 is not counted as active.
    assert c.total == 7 and c.terminated == 1
    assert c.by_status == {"not_started": 2, "in_progress": 3, "implemented": 1, "not_applicable": 1}
    assert t.total == 2 and t.terminated == 0
    assert t.by_status == {"not_started": 0, "in_progress": 1, "implemented": 1, "not_applicable": 0}
    assert total.total == 9 and total.terminated == 1
    assert total.by_status == {"not_started": 2, "in_progress": 4, "implemented": 2, "not_applicable": 1}

    # Latest finding per requirement from ITS latest period (C2: Report 2 partial beats Report 1 full;
    # C8 and T1: Report 1 is their latest); C1's re-rating replaced its earlier Report 2 finding.
    assert c.by_level == {"Full": 2, "Partial": 1, "Not yet assessed": 1, "Evaluation deferred": 1,
                          "Not in compliance": 1, "No finding yet": 1}
    assert t.by_level == {"Full": 1, "No finding yet": 1}

    # Percent at top: unassessed / deferred / unrated stay in the denominator.
    assert (c.at_top, c.pct_top) == (2, 29)      # 2 / 7
    assert (t.at_top, t.pct_top) == (1, 50)      # 1 / 2
    assert (total.at_top, total.pct_top) == (3, 33)  # 3 / 9
    assert (c.pct_implemented, t.pct_implemented, total.pct_implemented) == (14, 50, 22)

    # Overdue: open and past due (C2 only: C1 is implemented, C7 not applicable, C6 terminated).
    assert (c.overdue, t.overdue, total.overdue) == (1, 0, 1)
    # Due within 30/60/90 days, today included: C3 (0), C4 (+45), C5 (+75); T1 is implemented, T2 +95.
    assert c.due_within == {30: 1, 60: 2, 90: 3}
    assert t.due_within == {30: 0, 60: 0, 90: 0}
    assert total.due_within == {30: 1, 60: 2, 90: 3}

    # Evidence: current versions only; accepted counts as neither.
    assert (c.evidence_submitted, c.evidence_returned) == (2, 1)
    assert (t.evidence_submitted, t.evidence_returned) == (1, 0)
    assert (total.evidence_submitted, total.evidence_returned) == (3, 1)


def test_unassessed_and_deferred_are_never_non_compliance(alpha):
    classes = dashboard.level_classes(alpha["agency"])
    assert list(classes) == ["Not yet assessed", "Not in compliance", "Partial", "Full", "Evaluation deferred",
                             "No finding yet"]
    assert classes["Not yet assessed"] == "unassessed"
    assert classes["Evaluation deferred"] == "deferred"
    assert classes["No finding yet"] == "none"
    assert classes["Not in compliance"] == "rank-0"
    assert classes["Full"] == "top"
    assert len({classes["Not in compliance"], classes["Not yet assessed"], classes["Evaluation deferred"]}) == 3
    _per_module, total, _shown = dashboard.agency_measures(alpha["agency"])
    assert total.by_level["Not in compliance"] == 1  # C7 only


def test_module_filter_in_measures(alpha):
    cit, trn = alpha["modules"]
    per_module, total, shown = dashboard.agency_measures(alpha["agency"], "trn")
    assert [m.key for m in shown] == ["trn"] and set(per_module) == {trn.id}
    assert (total.total, total.at_top, total.overdue, total.evidence_submitted) == (2, 1, 0, 1)


def test_trend_per_period(alpha):
    entries = dashboard.trend(alpha["agency"])
    assert [e["period"].name for e in entries] == [P1_NAME, P2_NAME]  # oldest first
    p1, p2 = entries
    assert p1["levels"] == {"Partial": 1, "Full": 3} and p1["rated"] == 4
    assert (p1["at_top"], p1["pct_top"]) == (3, 33)                      # 3 / 9 active
    # Report 2: the terminated C6 is left out, C1's replaced finding is not counted twice.
    assert p2["levels"] == {"Full": 1, "Partial": 1, "Not yet assessed": 1, "Evaluation deferred": 1,
                            "Not in compliance": 1}
    assert p2["rated"] == 5 and (p2["at_top"], p2["pct_top"]) == (1, 11)  # 1 / 9
    assert p1["point"] == ("Report 1", 33)

    cit_only = dashboard.trend(alpha["agency"], "cit")
    assert [(e["rated"], e["at_top"], e["pct_top"]) for e in cit_only] == [(3, 2, 29), (5, 1, 14)]
    trn_only = dashboard.trend(alpha["agency"], "trn")
    assert [(e["rated"], e["at_top"], e["pct_top"]) for e in trn_only] == [(1, 1, 50), (0, 0, 0)]


def test_trend_without_periods_is_empty(db):
    agency = make_agency()
    make_requirement(agency, module=make_module("cit"))
    db.session.commit()
    assert dashboard.trend(agency) == []


# --- the page ------------------------------------------------------------------------------------

def test_dashboard_page_tables_and_charts(client, auth, alpha):
    auth.login("committee@example.test")
    response = client.get("/agencies/agency-a/dashboard")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    page = text(html)
    for figure in ("9 active requirements (1 terminated)", "22% reported implemented by the agency",
                   "33% at the top level", "1 overdue", "1 due in the next 30 days", "2 due in the next 60 days",
                   "3 due in the next 90 days", "3 evidence items waiting for review", "1 returned to the agency"):
        assert figure in page, figure

    t = tables(html)
    assert t["Requirements by agency-reported status"] == [
        ["Module", "Not started", "In progress", "Implemented", "Not applicable", "Active", "Share implemented"],
        ["CIT", "2", "3", "1", "1", "7", "14%"],
        ["Training", "0", "1", "1", "0", "2", "50%"],
        ["All shown", "2", "4", "2", "1", "9", "22%"],
    ]
    assert t["Requirements by latest monitor finding"] == [
        ["Module", "Not yet assessed", "Not in compliance", "Partial", "Full", "Evaluation deferred",
         "No finding yet", "At top level"],
        ["CIT", "1", "1", "1", "2", "1", "1", "29%"],
        ["Training", "0", "0", "0", "1", "0", "1", "50%"],
    ]
    assert t["Findings per monitoring period"] == [
        ["Period", "Rated", "Not yet assessed", "Not in compliance", "Partial", "Full", "Evaluation deferred",
         "At top level"],
        [P1_NAME, "4", "0", "0", "1", "3", "0", "33%"],
        [P2_NAME, "5", "1", "1", "1", "1", "1", "11%"],
    ]
    # Overdue and upcoming: the overdue C2 and the open ones due within 90 days, soonest first.
    upcoming = t["Open requirements due within 90 days or overdue, soonest first"]
    assert [row[1].split()[0] for row in upcoming[1:]] == ["C2", "C3", "C4", "C5"]
    assert "(overdue)" in upcoming[1][0]

    # Every chart is an accessible SVG with a <title> that carries the same numbers.
    svgs = re.findall(r"<svg[^>]*>.*?</svg>", html, flags=re.S)
    charts = [s for s in svgs if 'role="img"' in s]
    assert len(charts) == 2 + 2 + 1  # status per module, level per module, trend
    for chart in charts:
        assert re.search(r'<svg[^>]*aria-labelledby="([^"]+)"[^>]*>\s*<title id="\1">', chart), chart[:200]
    titles = [" ".join(m.split()) for m in re.findall(r"<title id=\"[^\"]+\">(.*?)</title>", html, flags=re.S)]
    assert "CIT by agency status: Not started 2, In progress 3, Implemented 1, Not applicable 1" in titles
    assert ("CIT by latest finding: Not yet assessed 1, Not in compliance 1, Partial 1, Full 2, "
            "Evaluation deferred 1, No finding yet 1") in titles
    assert "Share of active requirements at the top level by period: Report 1 33%, Report 2 11%" in titles
    assert "<script>" not in html and " style=" not in html
    # The method is explained on the page.
    assert "How these numbers are computed" in html
    # Period report and evidence package links.
    p1, p2 = alpha["periods"]
    assert f"/agencies/agency-a/periods/{p1.id}/report" in html
    assert f"/agencies/agency-a/periods/{p2.id}/evidence-package.zip" in html


def test_module_filter_in_the_url(client, auth, alpha):
    auth.login("officer@example.test")
    html = client.get("/agencies/agency-a/dashboard?module=trn").get_data(as_text=True)
    assert "At a glance: Training" in html
    assert '<option value="trn" selected>' in html
    t = tables(html)
    assert t["Requirements by agency-reported status"][1:] == [
        ["Training", "0", "1", "1", "0", "2", "50%"],
        ["All shown", "0", "1", "1", "0", "2", "50%"],
    ]
    assert t["Findings per monitoring period"][1:] == [
        [P1_NAME, "1", "0", "0", "0", "1", "0", "50%"],
        [P2_NAME, "0", "0", "0", "0", "0", "0", "0%"],
    ]
    assert "2 active requirements" in text(html)
    assert "CIT by agency status" not in html


def test_module_filter_with_htmx_returns_the_fragment(client, auth, alpha):
    auth.login("officer@example.test")
    response = client.get("/agencies/agency-a/dashboard?module=cit", headers=HTMX_BODY)
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "<html" not in html and "<body" not in html and 'id="dashboard-body"' not in html
    assert "At a glance: CIT" in html
    assert tables(html)["Requirements by agency-reported status"][-1] == [
        "All shown", "2", "3", "1", "1", "7", "14%"]
    assert "Training by agency status" not in html
    assert "HX-Request" in ",".join(response.headers.get_all("Vary"))
    # A boosted navigation, or a request aimed at another target, gets the whole page.
    whole = client.get("/agencies/agency-a/dashboard?module=cit",
                       headers={**HTMX_BODY, "HX-Boosted": "true"}).get_data(as_text=True)
    assert "<html" in whole and 'id="dashboard-body"' in whole


def test_unknown_module_is_ignored_with_a_notice(client, auth, alpha):
    auth.login("officer@example.test")
    response = client.get("/agencies/agency-a/dashboard?module=nope")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "Unknown module “nope” ignored" in html
    assert tables(html)["Requirements by agency-reported status"][-1][-2] == "9"  # all modules shown

    fragment = client.get("/agencies/agency-a/dashboard?module=<b>x</b>", headers=HTMX_BODY)
    assert fragment.status_code == 200
    body = fragment.get_data(as_text=True)
    assert "<html" not in body
    assert 'id="flash"' in body and 'hx-swap-oob="innerHTML"' in body and "ignored" in body
    assert "<b>x</b>" not in body  # escaped


@pytest.mark.parametrize("role", ["officer", "monitor", "committee"])
def test_every_member_role_sees_the_dashboard(client, auth, alpha, role):
    auth.login(f"{role}@example.test")
    assert client.get("/agencies/agency-a/dashboard").status_code == 200
    assert client.get("/agencies/agency-b/dashboard").status_code == 404
    assert client.get("/agencies/agency-b/dashboard?module=cit", headers=HTMX_BODY).status_code == 404


def test_dashboard_needs_sign_in_and_admin_sees_any_agency(client, auth, alpha, db):
    response = client.get("/agencies/agency-a/dashboard")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")
    make_user("admin@example.test", is_admin=True)
    db.session.commit()
    auth.login("admin@example.test")
    assert client.get("/agencies/agency-a/dashboard").status_code == 200
    assert client.get("/agencies/agency-b/dashboard").status_code == 200
    assert client.get("/agencies/agency-z/dashboard").status_code == 404


# --- roll-up -------------------------------------------------------------------------------------

@pytest.fixture
def three(db):
    """Alpha: 4 active (1 at top, 2 overdue); Beta: 2 active (2 at top); Gamma: 3 active (none at top, 1 overdue)."""
    today = utcnow().date()
    module = make_module("cit", "CIT")
    monitor = make_user("monitor@example.test")
    agencies = {}
    plan = {
        "Alpha": [("full", -1), (None, -2), ("partial", 10), ("none", None)],
        "Beta": [("full", None), ("full", 100)],
        "Gamma": [("not_assessed", -4), ("partial", 50), (None, 200)],
    }
    for name, reqs in plan.items():
        agency = make_agency(slug=name.lower(), name=name)
        agencies[name] = agency
        period = monitoring.create_period(agency, "R1", date(2025, 1, 1), date(2025, 6, 30), actor=monitor)
        lv = levels_of(agency)
        for i, (level, due) in enumerate(reqs):
            req = make_requirement(agency, module=module, code=f"{name[0]}{i}", status="in_progress",
                                   due_date=None if due is None else today + timedelta(days=due))
            if level:
                monitoring.record_finding(req, period, lv[level], "", actor=monitor)
        monitoring.file_period(period, date(2025, 7, 15), "Dkt. 1", actor=monitor)  # filed findings count
    # A terminated requirement leaves the roll-up's active counts.
    make_requirement(agencies["Beta"], module=module, code="B9", status="not_started",
                     due_date=today - timedelta(days=9), terminated_at=date(2025, 3, 1))
    gamma_req = make_requirement(agencies["Gamma"], module=module, code="G9", status="implemented")
    gamma_req.terminated_at = date(2025, 3, 1)
    db.session.add(Evidence(requirement_id=make_requirement(agencies["Alpha"], module=module, code="A9",
                                                            status="implemented").id,
                            kind="link", title="x", url="https://example.org", review_state="submitted"))
    # Memberships: the monitor watches Alpha and Gamma and is an officer of Beta.
    from tracker.models import Membership
    db.session.add_all([Membership(user_id=monitor.id, agency_id=agencies["Alpha"].id, role="monitor"),
                        Membership(user_id=monitor.id, agency_id=agencies["Gamma"].id, role="monitor"),
                        Membership(user_id=monitor.id, agency_id=agencies["Beta"].id, role="officer")])
    make_user("admin@example.test", is_admin=True)
    make_user("officer@example.test", role="officer", agency=agencies["Alpha"])
    make_user("committee@example.test", role="committee", agency=agencies["Beta"])
    db.session.commit()
    return agencies


def _rollup_rows(html):
    return tables(html)["Measures per agency"][1:]


def test_rollup_for_admin_lists_every_agency_with_the_measures(client, auth, three):
    auth.login("admin@example.test")
    html = client.get("/rollup").get_data(as_text=True)
    assert _rollup_rows(html) == [
        # agency, active, implemented, top, overdue, due 30/60/90, waiting, returned
        ["Alpha", "5", "20%", "20%", "2", "1 / 1 / 1", "1", "0"],
        ["Beta", "2", "0%", "100%", "0", "0 / 0 / 0", "0", "0"],
        ["Gamma", "3", "0%", "0%", "1", "0 / 1 / 1", "0", "0"],
    ]


def test_rollup_sorting(client, auth, three):
    auth.login("admin@example.test")

    def order(query):
        return [row[0] for row in _rollup_rows(client.get(f"/rollup{query}").get_data(as_text=True))]

    assert order("") == ["Alpha", "Beta", "Gamma"]
    assert order("?sort=name&dir=desc") == ["Gamma", "Beta", "Alpha"]
    assert order("?sort=top&dir=desc") == ["Beta", "Alpha", "Gamma"]
    assert order("?sort=top") == ["Gamma", "Alpha", "Beta"]
    assert order("?sort=requirements&dir=desc") == ["Alpha", "Gamma", "Beta"]
    assert order("?sort=overdue&dir=desc") == ["Alpha", "Gamma", "Beta"]
    assert order("?sort=waiting&dir=desc")[0] == "Alpha"
    html = client.get("/rollup?sort=top&dir=desc").get_data(as_text=True)
    assert 'aria-sort="descending"' in html
    assert 'href="/rollup?sort=top&amp;dir=asc"' in html  # the active column toggles


def test_rollup_unknown_sort_is_ignored_with_a_notice(client, auth, three):
    auth.login("admin@example.test")
    response = client.get("/rollup?sort=drop_table&dir=sideways")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "Unknown sort “drop_table” ignored." in html
    assert [row[0] for row in _rollup_rows(html)] == ["Alpha", "Beta", "Gamma"]


def test_rollup_for_a_monitor_shows_only_monitored_agencies(client, auth, three):
    auth.login("monitor@example.test")
    response = client.get("/rollup?sort=top&dir=desc")
    assert response.status_code == 200
    rows = _rollup_rows(response.get_data(as_text=True))
    assert [row[0] for row in rows] == ["Alpha", "Gamma"]  # not Beta, where they are an officer


@pytest.mark.parametrize("email", ["officer@example.test", "committee@example.test"])
def test_rollup_is_404_without_a_monitor_role(client, auth, three, email):
    auth.login(email)
    assert client.get("/rollup").status_code == 404
    assert client.get("/rollup?sort=top").status_code == 404


def test_rollup_needs_sign_in(client, three):
    response = client.get("/rollup")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")


# --- constant number of queries ------------------------------------------------------------------

def _grow_agency(db, agency, module, monitor, period, start, count):
    today = utcnow().date()
    lv = levels_of(agency)
    keys = ["full", "partial", "none", "not_assessed"]
    for i in range(start, start + count):
        req = make_requirement(agency, module=module, code=f"Q{i:04d}", status="in_progress",
                               due_date=today + timedelta(days=i % 120 - 20))
        monitoring.record_finding(req, period, lv[keys[i % 4]], f"n{i}", actor=monitor)
        db.session.add(Evidence(requirement_id=req.id, kind="link", title=f"e{i}", url="https://example.org",
                                review_state=("submitted", "returned", "accepted")[i % 3]))
    db.session.commit()


def test_dashboard_queries_do_not_grow_with_requirements(client, auth, db, count_queries, no_page_cache):
    cit, trn = make_module("cit", "CIT", 0), make_module("trn", "Training", 1)
    agency = make_agency(slug="agency-q")
    monitor = make_user("monitor@example.test", role="monitor", agency=agency)
    p1 = monitoring.create_period(agency, "R1", date(2025, 1, 1), date(2025, 6, 30), actor=monitor)
    p2 = monitoring.create_period(agency, "R2", date(2025, 7, 1), date(2025, 12, 31), actor=monitor)
    _grow_agency(db, agency, cit, monitor, p1, 0, 5)
    _grow_agency(db, agency, trn, monitor, p2, 5, 5)
    auth.login("monitor@example.test")

    def measure(url, headers=None):
        client.get(url, headers=headers)  # warm up (session refresh and the like)
        with count_queries() as n:
            response = client.get(url, headers=headers)
        assert response.status_code == 200
        return n.count

    urls = [("/agencies/agency-q/dashboard", None), ("/agencies/agency-q/dashboard?module=trn", None),
            ("/agencies/agency-q/dashboard?module=cit", HTMX_BODY)]
    small = [measure(url, headers) for url, headers in urls]
    _grow_agency(db, agency, cit, monitor, p1, 10, 45)
    _grow_agency(db, agency, trn, monitor, p2, 55, 45)
    large = [measure(url, headers) for url, headers in urls]
    assert large == small, (small, large)
    assert 5 < max(small) < 40


def test_rollup_queries_do_not_grow_with_agencies(client, auth, db, count_queries):
    module = make_module("cit", "CIT")
    admin = make_user("admin@example.test", is_admin=True)
    monitor = make_user("monitor@example.test")

    def add_agencies(start, count):
        from tracker.models import Membership
        for i in range(start, start + count):
            agency = make_agency(slug=f"ag-{i}", name=f"Agency {i:02d}")
            db.session.add(Membership(user_id=monitor.id, agency_id=agency.id, role="monitor"))
            period = monitoring.create_period(agency, "R1", date(2025, 1, 1), date(2025, 6, 30), actor=admin)
            _grow_agency(db, agency, module, admin, period, 0, 3)

    add_agencies(0, 2)
    auth.login("admin@example.test")

    def measure():
        client.get("/rollup?sort=top&dir=desc")
        with count_queries() as n:
            response = client.get("/rollup?sort=top&dir=desc")
        assert response.status_code == 200
        return n.count

    admin_small = measure()
    auth.logout()
    auth.login("monitor@example.test")
    monitor_small = measure()
    add_agencies(2, 6)
    monitor_large = measure()
    auth.logout()
    auth.login("admin@example.test")
    admin_large = measure()
    assert len(_rollup_rows(client.get("/rollup").get_data(as_text=True))) == 8
    assert (admin_small, monitor_small) == (admin_large, monitor_large)


def test_rollup_service_issues_a_fixed_number_of_queries(db, count_queries):
    module = make_module("cit", "CIT")
    admin = make_user(is_admin=True)
    agencies = []
    for i in range(8):
        agency = make_agency()
        period = monitoring.create_period(agency, "R1", date(2025, 1, 1), date(2025, 6, 30), actor=admin)
        _grow_agency(db, agency, module, admin, period, 0, 2 + i)
        agencies.append(agency)
    db.session.commit()
    assert [a.name for a in agencies]  # load them now, so only the roll-up's own queries are counted
    with count_queries() as two:
        dashboard.rollup(agencies[:2], "top", True)
    with count_queries() as eight:
        rows = dashboard.rollup(agencies, "top", True)
    assert two.count == eight.count <= 5
    assert len(rows) == 8
