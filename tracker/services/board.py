"""Reads for the requirement board and the requirement page (constant query counts)."""
import functools
from dataclasses import dataclass, field
from datetime import timedelta
from types import SimpleNamespace

import sqlalchemy as sa

from tracker.extensions import db
from tracker.models import (
    OPEN_STATUSES,
    STATUSES,
    Citation,
    Comment,
    ComplianceLevel,
    DeadlineChange,
    DecreeSection,
    Evidence,
    EvidenceReview,
    Finding,
    Module,
    MonitoringPeriod,
    Recommendation,
    Requirement,
    StatusChange,
    User,
    utcnow,
)

DUE_FILTERS = {"overdue": "Overdue", "upcoming": "Due in the next 30 days", "none": "No due date"}
# Sortable columns (within each module) and their labels; "id" is the decree's own order.
SORTS = {"id": "Id", "status": "Status", "owner": "Owner", "due": "Due", "changed": "Last change"}
PAGE_SIZES = (25, 50, 100, 200)
# Issue 12: the board groups rows by module (the catalog's) or by the decree's own sections.
GROUPS = {"module": "Module", "section": "Decree section"}
DEFAULT_PAGE_SIZE = 100
SOON_DAYS = 30


@dataclass
class BoardFilters:
    module: str = ""
    status: str = ""
    owner: str = ""
    due: str = ""
    q: str = ""
    section: str = ""   # a section id, or "none" (issue 12)
    entity: str = ""    # a responsible entity's id (issue 12)
    group: str = "module"
    sort: str = "id"
    desc: bool = False
    page: int = 1
    per_page: int = DEFAULT_PAGE_SIZE
    ignored: list = field(default_factory=list)

    @classmethod
    def from_args(cls, args, module_keys, owner_ids):
        """Unknown values are dropped with a notice, never an error."""
        f = cls()
        ignored = []
        for name, allowed in (("module", module_keys), ("status", STATUSES), ("due", DUE_FILTERS)):
            value = (args.get(name) or "").strip()
            if value and value not in allowed:
                ignored.append(name)
                value = ""
            setattr(f, name, value)
        owner = (args.get("owner") or "").strip()
        if owner and owner != "none" and owner not in {str(i) for i in owner_ids}:
            ignored.append("owner")
            owner = ""
        f.owner = owner
        f.q = (args.get("q") or "").strip()[:200]
        f._structure(args, ignored)
        f._paging(args, ignored)
        f.ignored = ignored
        return f

    def _structure(self, args, ignored):
        """Section and entity ids (rows of another agency simply match nothing) and the grouping."""
        for name, allowed in (("section", ("none",)), ("entity", ())):
            value = (args.get(name) or "").strip()
            if value and not (value in allowed or (value.isdigit() and len(value) < 10)):
                ignored.append(name)
                value = ""
            setattr(self, name, value)
        group = (args.get("group") or "").strip()
        if group and group not in GROUPS:
            ignored.append("group")
        self.group = group if group in GROUPS else "module"

    def _paging(self, args, ignored):
        sort = (args.get("sort") or "").strip()
        if sort and sort not in SORTS:
            ignored.append("sort")
        self.sort = sort if sort in SORTS else "id"
        self.desc = (args.get("dir") or "").strip() == "desc"
        for name, default, ok in (("page", 1, lambda n: 1 <= n <= 100000), ("per_page", DEFAULT_PAGE_SIZE,
                                                                            lambda n: n in PAGE_SIZES)):
            raw = (args.get(name) or "").strip()
            value = int(raw) if raw.isdigit() and ok(int(raw)) else default
            if raw and str(value) != raw:
                ignored.append(name)
            setattr(self, name, value)

    def as_args(self):
        return {k: v for k, v in (("module", self.module), ("status", self.status), ("owner", self.owner),
                                  ("due", self.due), ("q", self.q), ("section", self.section),
                                  ("entity", self.entity)) if v}

    def view_args(self, **changes):
        """The filters, sort, page size and page as URL arguments (defaults left out), with `changes` applied."""
        values = {**self.as_args(), "group": self.group, "sort": self.sort, "dir": "desc" if self.desc else "",
                  "page": self.page, "per_page": self.per_page, **changes}
        defaults = {"group": "module", "sort": "id", "dir": "", "page": 1, "per_page": DEFAULT_PAGE_SIZE}
        return {k: v for k, v in values.items() if v and defaults.get(k) != v}

    @property
    def active(self):
        return bool(self.as_args())


def _escape_like(text):
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _shape(filters):
    """Which filters are set, and how: the board's statements are built once per shape (building one took as
    long as running it) and run with _params()."""
    def kind(value):
        return "none" if value == "none" else bool(value)

    return (bool(filters.module), bool(filters.status), kind(filters.owner), filters.due or "",
            kind(filters.section), bool(filters.entity), bool(filters.q))


def _params(agency, filters, today):
    return {"agency": agency.id, "module_key": filters.module, "status": filters.status,
            "owner": int(filters.owner) if filters.owner and filters.owner != "none" else None,
            "today": today, "soon": today + timedelta(days=SOON_DAYS),
            "section": int(filters.section) if filters.section and filters.section != "none" else None,
            "entity": int(filters.entity) if filters.entity else None,
            "pattern": f"%{_escape_like(filters.q.lower())}%" if filters.q else None}


@functools.cache
def _conditions(shape):
    by_module, by_status, owner, due, section, by_entity, search = shape
    today = sa.bindparam("today", type_=sa.Date)
    where = [Requirement.agency_id == sa.bindparam("agency")]
    if by_module:
        where.append(Requirement.module_id == sa.select(Module.id).where(Module.key == sa.bindparam("module_key"))
                     .scalar_subquery())
    if by_status:
        where.append(Requirement.status == sa.bindparam("status"))
    if owner == "none":
        where.append(Requirement.owner_id.is_(None))
    elif owner:
        where.append(Requirement.owner_id == sa.bindparam("owner"))
    if due == "overdue":
        where += [Requirement.due_date < today, Requirement.is_open]
    elif due == "upcoming":
        where += [Requirement.due_date >= today, Requirement.due_date <= sa.bindparam("soon", type_=sa.Date),
                  Requirement.is_open]
    elif due == "none":
        where.append(Requirement.due_date.is_(None))
    if section == "none":
        where.append(Requirement.section_id.is_(None))
    elif section:
        where.append(Requirement.section_id == sa.bindparam("section"))
    if by_entity:
        where.append(Requirement.entity_id == sa.bindparam("entity"))
    if search:
        pattern = sa.bindparam("pattern")
        where.append(sa.or_(*(sa.func.lower(col).like(pattern, escape="\\") for col in (
            Requirement.code, Requirement.title, Requirement.summary, Requirement.citation_text))))
    return tuple(where)


def matching_ids(agency, filters):
    """Ids of every requirement matching the filters, on every page (bulk edit's "select all"); one query."""
    return db.session.execute(_matching_statement(_shape(filters)),
                              _params(agency, filters, utcnow().date())).scalars().all()


@functools.cache
def _matching_statement(shape):
    return sa.select(Requirement.id).where(*_conditions(shape))


# The columns a board row shows: plain values (no ORM entities), so a page of 100 rows is cheap to load.
ROW_COLUMNS = (Requirement.id, Requirement.code, Requirement.title, Requirement.status, Requirement.owner_id,
               sa.func.coalesce(User.name, User.email).label("owner_name"), Requirement.due_date,
               Requirement.updated_at, Requirement.terminated_at, Requirement.module_id,
               Requirement.cadence_months, Requirement.row_version, Requirement.section_id)


def _evidence_count(state=None):
    """Current (not superseded) evidence of the row's requirement, of one review state or all."""
    query = sa.select(sa.func.count()).where(Evidence.requirement_id == Requirement.id,
                                             Evidence.superseded.is_(False))
    if state:
        query = query.where(Evidence.review_state == state)
    return query.correlate(Requirement).scalar_subquery()


def _latest_level():
    """The level of the row's latest counted finding (current, in the agency's most recent filed period)."""
    from tracker.services import monitoring

    return (sa.select(Finding.level_id).join(MonitoringPeriod, MonitoringPeriod.id == Finding.period_id)
            .where(Finding.requirement_id == Requirement.id, MonitoringPeriod.agency_id == Requirement.agency_id,
                   monitoring.counted(period=MonitoringPeriod))
            .order_by(MonitoringPeriod.end_date.desc(), Finding.id.desc()).limit(1)
            .correlate(Requirement).scalar_subquery())


@functools.cache
def _page_columns():
    """The row's columns plus, in the same query, its evidence counts and latest finding's level (built once:
    constructing these expressions costs more than running them)."""
    return (*ROW_COLUMNS, _evidence_count().label("ev_total"), _evidence_count("submitted").label("ev_submitted"),
            _evidence_count("accepted").label("ev_accepted"), _evidence_count("returned").label("ev_returned"),
            _latest_level().label("level_id"))


def row_extras(agency, rows):
    """(evidence, flags) for rows loaded with _page_columns(): the evidence counts by requirement, and the
    disagreement sentences (one query for the levels involved)."""
    from tracker.services import monitoring

    evidence = {r.id: {"total": r.ev_total, "submitted": r.ev_submitted, "accepted": r.ev_accepted,
                       "returned": r.ev_returned} for r in rows if r.ev_total}
    level_ids = {r.level_id for r in rows if r.level_id is not None}
    if not level_ids:
        return evidence, {}
    scale = db.session.execute(_levels_statement(), {"ids": list(level_ids), "scale": agency.scale_id}).all()
    levels = {lvl.id: lvl for lvl in scale}
    top = monitoring.top_rank([lvl for lvl in scale if lvl.scale_id == agency.scale_id])
    flags = {}
    for r in rows:
        level = levels.get(r.level_id)
        if level is None:
            continue
        subject = SimpleNamespace(status=r.status, status_label=STATUSES.get(r.status, r.status))
        flag = monitoring.disagreement(subject, SimpleNamespace(level=level), top)
        if flag:
            flags[r.id] = flag
    return evidence, flags


@functools.cache
def _levels_statement():
    """The levels the page's findings use, and the agency's scale (for its top rank); built once."""
    return (sa.select(ComplianceLevel.id, ComplianceLevel.kind, ComplianceLevel.rank, ComplianceLevel.label,
                      ComplianceLevel.scale_id)
            .where(sa.or_(ComplianceLevel.id.in_(sa.bindparam("ids", expanding=True)),
                          ComplianceLevel.scale_id == sa.bindparam("scale"))))


@dataclass
class BoardPage:
    rows: list          # this page's rows, in module order then the chosen sort
    total: int          # rows matching the filters, on every page
    page: int
    pages: int
    modules: list       # [ModuleSummary] of modules with matching rows, in module order


@dataclass
class ModuleSummary:
    module: object
    rows: int
    overdue: int
    counts: dict        # active (not terminated) requirements by status
    first_page: int


@functools.cache
def _ordering(sort, desc, group="module"):
    status_rank = sa.case({key: i for i, key in enumerate(STATUSES)}, value=Requirement.status, else_=99)
    columns = {"status": [status_rank], "owner": [Requirement.owner_id.is_(None), User.name, User.email],
               "due": [Requirement.due_date.is_(None), Requirement.due_date], "changed": [Requirement.updated_at],
               "id": [Requirement.sort_key]}[sort]
    if desc:
        # Rows without an owner or a due date stay last either way.
        columns = [c if i == 0 and sort in ("owner", "due") else c.desc() for i, c in enumerate(columns)]
    groups = ([DecreeSection.sort_key.is_(None), DecreeSection.sort_key, DecreeSection.id] if group == "section"
              else [Module.position, Module.id])
    return [*groups, *columns, Requirement.sort_key, Requirement.id]


NO_SECTION = SimpleNamespace(id=0, key="section-none", name="No section")


def _groups(filters, modules, sections):
    """The groups rows come in, in order: modules, or the decree's sections (objects with id, key and name, like
    a module) and "No section" last."""
    if filters.group != "section":
        return modules
    return [SimpleNamespace(id=s.id, key=f"section-{s.id}", name=s.label) for s in sections] + [NO_SECTION]


def board_page(agency, filters, modules, sections=()):
    """One page of the board: module (or section) summaries over every matching row (one GROUP BY) and the
    page's rows (one query), whatever the agency's size. `sections`: the agency's, in order, to group by them."""
    shape, params = _shape(filters), _params(agency, filters, utcnow().date())
    modules = _groups(filters, modules, sections)
    summary = db.session.execute(_summary_statement(shape, filters.group == "section"), params).all()
    per_module = {}
    for module_id, status, n, active, overdue in summary:
        entry = per_module.setdefault(module_id or 0, {"rows": 0, "overdue": 0,
                                                       "counts": dict.fromkeys(STATUSES, 0)})
        entry["rows"] += n
        entry["overdue"] += overdue or 0
        entry["counts"][status] = entry["counts"].get(status, 0) + (active or 0)
    total = sum(e["rows"] for e in per_module.values())
    pages = max((total + filters.per_page - 1) // filters.per_page, 1)
    page = min(filters.page, pages)
    summaries, before = [], 0
    for m in modules:
        if m.id in per_module:
            e = per_module[m.id]
            summaries.append(ModuleSummary(m, e["rows"], e["overdue"], e["counts"], before // filters.per_page + 1))
            before += e["rows"]
    rows = []
    if total:
        rows = db.session.execute(_rows_statement(shape, filters.sort, filters.desc, filters.group), {
            **params, "limit": filters.per_page, "offset": (page - 1) * filters.per_page}).all()
    return BoardPage(rows, total, page, pages, summaries)


@functools.cache
def _summary_statement(shape, by_section):
    group_column = Requirement.section_id if by_section else Requirement.module_id
    open_overdue = sa.and_(Requirement.due_date < sa.bindparam("today", type_=sa.Date), Requirement.is_open,
                           Requirement.terminated_at.is_(None))
    return (sa.select(group_column, Requirement.status, sa.func.count(),
                      sa.func.sum(sa.case((Requirement.terminated_at.is_(None), 1), else_=0)),
                      sa.func.sum(sa.case((open_overdue, 1), else_=0)))
            .where(*_conditions(shape)).group_by(group_column, Requirement.status))


@functools.cache
def _rows_statement(shape, sort, desc, group):
    return (sa.select(*_page_columns()).join(Module, Module.id == Requirement.module_id)
            .outerjoin(DecreeSection, DecreeSection.id == Requirement.section_id)
            .outerjoin(User, User.id == Requirement.owner_id).where(*_conditions(shape))
            .order_by(*_ordering(sort, desc, group))
            .limit(sa.bindparam("limit")).offset(sa.bindparam("offset")))


def board_row(agency, requirement_id):
    """One board row's values (for the row fragments)."""
    return db.session.execute(
        sa.select(*_page_columns()).outerjoin(User, User.id == Requirement.owner_id)
        .where(Requirement.agency_id == agency.id, Requirement.id == requirement_id)
    ).one()


def due_state(row, today):
    """'overdue', 'soon' (within 30 days) or '': only an open requirement's due date binds."""
    if row.due_date is None or not (row.status in OPEN_STATUSES
                                    or (row.cadence_months is not None and row.status != "not_applicable")):
        return ""
    days = (row.due_date - today).days
    return "overdue" if days < 0 else ("soon" if days <= SOON_DAYS else "")


def disagreement_flags(agency, rows):
    """{requirement_id: sentence} where the agency's status and the latest filed finding disagree (2 queries).
    `rows` are requirements or board rows (anything with id and status); only their findings are read."""
    from tracker.services import monitoring

    ids = [r.id for r in rows]
    if not ids:
        return {}
    top = monitoring.top_rank(monitoring.scale_levels(agency))
    latest = {}
    for req_id, level in db.session.execute(
        sa.select(Finding.requirement_id, ComplianceLevel)
        .join(MonitoringPeriod, MonitoringPeriod.id == Finding.period_id)
        .join(ComplianceLevel, ComplianceLevel.id == Finding.level_id)
        .where(MonitoringPeriod.agency_id == agency.id, monitoring.counted(period=MonitoringPeriod),
               Finding.requirement_id.in_(ids))
        .order_by(MonitoringPeriod.end_date, Finding.id)
    ):
        latest[req_id] = level
    flags = {}
    for r in rows:
        level = latest.get(r.id)
        if level is None:
            continue
        subject = SimpleNamespace(status=r.status, status_label=STATUSES.get(r.status, r.status))
        flag = monitoring.disagreement(subject, SimpleNamespace(level=level), top)
        if flag:
            flags[r.id] = flag
    return flags


def status_counts(rows):
    """Counts by status per module; requirements the court has terminated are not active and not counted."""
    counts = {}
    for r in rows:
        per = counts.setdefault(r.module_id, dict.fromkeys(STATUSES, 0))
        if r.terminated_at is None:
            per[r.status] += 1
    return counts


def requirement_detail(requirement, requests=False):
    """Citations, evidence (all versions) and the merged timeline for one requirement: fixed query count.
    `requests`: also document requests concerning it (for the agency and its monitors only)."""
    citations = []
    if requirement.recommendation_id:
        citations = db.session.execute(
            sa.select(Citation).where(Citation.recommendation_id == requirement.recommendation_id)
            .order_by(Citation.position)
        ).scalars().all()
        recommendation = db.session.get(Recommendation, requirement.recommendation_id)
    else:
        recommendation = None
    evidence = db.session.execute(
        sa.select(Evidence).where(Evidence.requirement_id == requirement.id)
        .options(sa.orm.joinedload(Evidence.uploaded_by)).order_by(Evidence.created_at.desc(), Evidence.id.desc())
    ).scalars().all()
    reviews = db.session.execute(
        sa.select(EvidenceReview).join(Evidence).where(Evidence.requirement_id == requirement.id)
        .options(sa.orm.joinedload(EvidenceReview.reviewer))
    ).scalars().all()
    statuses = db.session.execute(
        sa.select(StatusChange).where(StatusChange.requirement_id == requirement.id)
        .options(sa.orm.joinedload(StatusChange.actor))
    ).scalars().all()
    deadlines = db.session.execute(
        sa.select(DeadlineChange).where(DeadlineChange.requirement_id == requirement.id)
        .options(sa.orm.joinedload(DeadlineChange.actor))
    ).scalars().all()
    comments = db.session.execute(
        sa.select(Comment).where(Comment.requirement_id == requirement.id).options(sa.orm.joinedload(Comment.author))
    ).scalars().all()
    by_id = {e.id: e for e in evidence}
    timeline = (
        [("status", s.created_at, s.actor, s) for s in statuses]
        + [("deadline", d.created_at, d.actor, d) for d in deadlines]
        + [("comment", c.created_at, c.author, c) for c in comments]
        + [("evidence", e.created_at, e.uploaded_by, e) for e in evidence]
        + [("review", r.created_at, r.reviewer, (r, by_id.get(r.evidence_id))) for r in reviews]
    )
    if requests:
        from tracker.services.document_requests import timeline as request_timeline

        timeline += request_timeline(requirement)
    from tracker.services.committee import requirement_timeline as committee_timeline  # issue 14

    timeline += committee_timeline(requirement)
    timeline.sort(key=lambda item: item[1], reverse=True)
    latest_returns = {}
    for r in sorted(reviews, key=lambda r: r.created_at):
        latest_returns[r.evidence_id] = r
    return {"citations": citations, "recommendation": recommendation, "evidence": evidence,
            "latest_review": latest_returns, "timeline": timeline}


def latest_reviews(evidence_ids):
    """{evidence_id: latest EvidenceReview} in one query."""
    if not evidence_ids:
        return {}
    latest = {}
    for review in db.session.execute(
        sa.select(EvidenceReview).where(EvidenceReview.evidence_id.in_(evidence_ids))
        .options(sa.orm.joinedload(EvidenceReview.reviewer)).order_by(EvidenceReview.created_at, EvidenceReview.id)
    ).scalars():
        latest[review.evidence_id] = review
    return latest


def version_chain(evidence, all_evidence):
    """This item and the versions it replaced, newest first (from an already loaded list)."""
    by_id = {e.id: e for e in all_evidence}
    chain, current = [], evidence
    while current is not None:
        chain.append(current)
        current = by_id.get(current.supersedes_id)
    return chain


def owner_choices(agency_id):
    from tracker.services.requirements import agency_members

    return agency_members(agency_id)

