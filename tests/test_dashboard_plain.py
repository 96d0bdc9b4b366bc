"""A dashboard a community member can read (issue 14 §4): the paragraph in plain language whose every number is
in the table under it, recent activity as sentences with codes and names (never addresses or ids, only what
the role may see, filtered by module), the trend at a readable size, how many more deadlines there are, one
colour for Not applicable, and "No finding yet" hatched."""
import re
from datetime import timedelta
from html import unescape
from pathlib import Path

import sqlalchemy as sa

from tests.factories import make_requirement
from tests.test_dashboard import alpha, tables  # noqa: F401 - the dashboard suite's agency, as a fixture here
from tracker.models import User, utcnow
from tracker.services import evidence as evidence_service
from tracker.services import requirements as req_service

URL = "/agencies/agency-a/dashboard"


def _summary(html):
    return unescape(re.search(r'<p class="tracker-summary" id="dashboard-summary">(.*?)</p>', html, re.S).group(1))


def _activity(html):
    section = html.split("<h2>Recent activity</h2>", 1)[1].split("</ul>", 1)[0]
    return [re.sub(r"<[^>]+>", "", item).split("·", 1)[1].strip() for item in re.findall(r"<li>(.*?)</li>", section,
                                                                                           re.S)]


def test_the_paragraph_says_the_numbers_and_each_is_in_the_table_below(client, auth, alpha):  # noqa: F811
    auth.login("committee@example.test")
    html = client.get(URL).get_data(as_text=True)
    paragraph = _summary(html)
    assert paragraph == (
        "The department reports 2 of 9 active requirements implemented. The monitor's last filed report "
        "(Report 2: H2 2025, ending December 2025) rated 1 requirement Not yet assessed, 1 Not in compliance, "
        "1 Partial, 1 Full and 1 Evaluation deferred. 1 deadline has passed; 1 falls in the next 30 days. "
        "The advisory committee has not submitted a recommendation yet.")
    table = tables(html)["The numbers in this paragraph"]
    assert table[0] == ["What", "Number"]
    figures = {row[1] for row in table[1:]}
    # Every count in the text (not the period's name, nor the 30 of "the next 30 days") is a row below.
    counts = re.sub(r"Report 2: H2 2025, ending December 2025|next 30 days", "", paragraph)
    numbers = set(re.findall(r"\b\d+\b", counts))
    assert numbers <= figures
    assert ["Reported implemented by the department", "2"] in table and ["Active requirements", "9"] in table
    assert ["Rated Partial in the last filed report (Report 2: H2 2025)", "1"] in table


def test_the_paragraph_follows_the_module_filter(client, auth, alpha):  # noqa: F811
    auth.login("committee@example.test")
    paragraph = _summary(client.get(URL + "?module=trn").get_data(as_text=True))
    assert paragraph.startswith("The department reports 1 of 2 active Training requirements implemented.")
    assert "No deadline has passed" in paragraph


def test_activity_is_sentences_with_codes_and_names_never_addresses_or_ids(client, auth, db, alpha):  # noqa: F811
    officer = db.session.get(User, alpha["users"]["officer"].id)
    officer.name = "Priya Castellanos"
    c2, t2 = alpha["reqs"]["C2"], alpha["reqs"]["T2"]
    req_service.set_status(c2, "implemented", "Roster complete.", c2.row_version, actor=officer)
    req_service.add_comment(t2, "Training starts in May.", actor=officer)
    evidence_service.add_link(c2, "https://example.org/roster", {"title": "Roster", "visibility": "restricted"},
                              actor=officer)
    evidence_service.add_link(t2, "https://example.org/plan", {"title": "Plan", "visibility": "shareable"},
                              actor=officer)
    db.session.commit()

    auth.login("officer@example.test")
    officer_view = _activity(client.get(URL).get_data(as_text=True))
    assert officer_view[:4] == ["Priya Castellanos added evidence to T2.", "Priya Castellanos added evidence to C2.",
                                "Priya Castellanos commented on T2.", "Priya Castellanos marked C2 Implemented."]
    # The monitor who filed the reports has no name here: "Someone", never the address.
    assert "Someone filed the monitoring report “Report 2: H2 2025”." in officer_view
    for line in officer_view:
        assert "@" not in line and not re.search(r"\b(id|#)\s*\d", line), line
    auth.logout()

    # Committee members: no restricted evidence.
    auth.login("committee@example.test")
    committee_view = _activity(client.get(URL).get_data(as_text=True))
    assert "Priya Castellanos added evidence to C2." not in committee_view
    assert committee_view[:3] == ["Priya Castellanos added evidence to T2.", "Priya Castellanos commented on T2.",
                                  "Priya Castellanos marked C2 Implemented."]
    # The module filter applies: Training's requirements only.
    training = _activity(client.get(URL + "?module=trn").get_data(as_text=True))
    assert training == ["Priya Castellanos added evidence to T2.", "Priya Castellanos commented on T2."]


def test_the_deadlines_table_says_how_many_more_and_links_the_full_list(client, auth, db, alpha):  # noqa: F811
    cit = alpha["modules"][0]
    today = utcnow().date()
    for i in range(16):
        make_requirement(alpha["agency"], module=cit, code=f"D{i:02d}", status="not_started",
                         due_date=today + timedelta(days=10 + i))
    db.session.commit()
    auth.login("committee@example.test")
    html = client.get(URL).get_data(as_text=True)
    assert "Showing the first 15 of 20 overdue or due in the next 90 days." in html
    assert '/agencies/agency-a?sort=due">All requirements by due date</a>' in html
    html = client.get(URL + "?module=trn").get_data(as_text=True)
    assert "Showing the first" not in html


def test_the_trend_is_drawn_at_a_readable_size(client, auth, alpha):  # noqa: F811
    auth.login("committee@example.test")
    html = client.get(URL).get_data(as_text=True)
    chart = re.search(r'<svg class="tracker-chart tracker-chart--trend" viewBox="0 0 (\d+) (\d+)".*?</svg>', html, re.S)
    width, height = int(chart.group(1)), int(chart.group(2))
    assert width >= 640 and height >= 280
    bars = re.findall(r'<rect [^>]*width="([\d.]+)" height="([\d.]+)" class="tracker-chart__top"', chart.group(0))
    assert [float(h) for _w, h in bars] == [66, 22]  # 33 % and 11 %, 2 px a point
    assert all(float(w) >= 80 for w, _h in bars)
    assert 'class="tracker-chart__label tracker-chart__label--large">Report 1</text>' in chart.group(0)


def test_not_applicable_has_one_colour_and_no_finding_yet_is_hatched(client, auth, alpha):  # noqa: F811
    css = (Path(__file__).resolve().parents[1] / "tracker" / "static" / "app.css").read_text(encoding="utf-8")
    chart = re.search(r"\.tracker-chart__not-applicable \{ fill: (#[0-9a-f]{6}); \}", css).group(1)
    badge = re.search(r"\.tracker-badge--not_applicable \{[^}]*border-color: (#[0-9a-f]{6})", css).group(1)
    assert chart == badge
    auth.login("committee@example.test")
    html = client.get(URL).get_data(as_text=True)
    assert 'class="tracker-chart__none" fill="url(#level-cit-none)"' in html
    assert '<pattern id="level-cit-none"' in html
    # The empty track behind the bars is a different, flat fill.
    track = re.search(r"\.tracker-chart__track \{ fill: (#[0-9a-f]{6}); \}", css).group(1)
    assert track != "#ffffff"


def test_the_two_implemented_columns_have_distinct_names(client, auth, alpha):  # noqa: F811
    auth.login("committee@example.test")
    header = tables(client.get(URL).get_data(as_text=True))["Requirements by agency-reported status"][0]
    assert len(header) == len(set(header)) and "Share implemented" in header


def test_the_dashboard_query_count_does_not_grow_with_activity(client, auth, db, alpha, count_queries,  # noqa: F811
                                                               no_page_cache):
    officer = db.session.get(User, alpha["users"]["officer"].id)
    req_service.add_comment(alpha["reqs"]["C2"], "First.", actor=officer)
    db.session.commit()
    auth.login("officer@example.test")
    with count_queries() as few:
        client.get(URL)
    for code in ("C3", "C4", "C5"):
        req = alpha["reqs"][code]
        req_service.add_comment(req, "Noted.", actor=officer)
        evidence_service.add_link(req, "https://example.org/x", {"title": "X", "visibility": "shareable"},
                                  actor=officer)
    db.session.commit()
    with count_queries() as many:
        client.get(URL)
    assert many.count == few.count
    assert db.session.execute(sa.select(sa.func.count()).select_from(User)).scalar() >= 4
