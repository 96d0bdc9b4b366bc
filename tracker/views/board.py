"""The compliance officer's board and requirement page, with inline edits.

Each edit is one transaction. htmx requests from a board row get the row back (200, 422 with the
error, 409 with the newer values); plain forms get a redirect, or the requirement page with the error.
"""
from types import SimpleNamespace

from flask import Blueprint, abort, flash, g, get_template_attribute, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from flask_wtf.csrf import generate_csrf
from markupsafe import Markup
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.exc import StaleDataError

from tracker import cache
from tracker.access import agency_or_404, get_scoped_or_404, require_role
from tracker.extensions import db
from tracker.forms import apply_errors, field_errors
from tracker.forms.requirements import (
    BulkForm,
    CommentForm,
    DueDateForm,
    EvidenceForm,
    NotesForm,
    OwnerForm,
    RowForm,
    StatusForm,
)
from tracker.htmx import wants_fragment
from tracker.models import STATUSES, Module, Requirement, utcnow
from tracker.services import board as board_service
from tracker.services import decree as decree_service
from tracker.services import monitoring as monitoring_service
from tracker.services import requirements as req_service
from tracker.services import submissions
from tracker.services.errors import ValidationFailed
from tracker.urls import safe_next
from tracker.views.repeats import repeat_response

bp = Blueprint("board", __name__)

EDIT_ROLES = {"officer"}
# Advisory-committee members comment too (issue 14): their questions and remarks on a requirement.
COMMENT_ROLES = {"officer", "monitor", "committee"}


def can_edit():
    return g.get("agency_role") in EDIT_ROLES | {"admin"}


def can_comment():
    return g.get("agency_role") in COMMENT_ROLES | {"admin"}


@bp.app_context_processor
def _permissions():
    return {"can_edit": can_edit, "can_comment": can_comment}


def _modules():
    return db.session.execute(Module.in_order()).scalars().all()


BOARD_ARGS = ("module", "status", "owner", "due", "q", "section", "entity", "group", "sort", "dir", "page", "per_page")
CSRF_SLOT = Markup("<!--csrf-->")  # noqa: S704 - a constant


@bp.get("/agencies/<slug>")
@login_required
def board(slug):
    agency = agency_or_404(slug)
    fragment = wants_fragment() and request.headers.get("HX-Target") == "board"
    args = tuple((name, request.args.get(name, "")) for name in BOARD_ARGS)

    # The page depends on the data, the date, the filters and what the viewer may do, nothing else
    # (rows carry no CSRF token; the bulk form's is put in below), so one rendering serves every viewer with
    # the same rights.
    key = (agency.id, fragment, can_edit(), current_user.is_admin, args)
    html, ignored = cache.value("board", key, lambda: _render_board(agency, request.args, fragment),
                                agencies=agency.id, shared=True)
    if ignored:
        flash(f"Unknown filter value ignored: {', '.join(ignored)}.", "warning")
    if fragment:
        return html
    return _board_page(agency, html)


def _board_page(agency, html, status=200):
    token = Markup('<input type="hidden" name="csrf_token" value="%s">') % generate_csrf()
    content = Markup(html.replace(CSRF_SLOT, str(token)))  # noqa: S704 - rendered by Jinja; the token is escaped
    return render_template("board/board.html", agency=agency, content=content), status


def _render_board(agency, args, fragment, checked=(), **extra):
    modules = _modules()
    owners = board_service.owner_choices(agency.id)
    filters = board_service.BoardFilters.from_args(args, {m.key for m in modules}, [u.id for u in owners])
    sections, entities = decree_service.sections(agency), decree_service.entities(agency)  # issue 12
    context = _board_context(agency, modules, filters, sections)
    context["b"].checked = set(checked)
    context["rows_html"] = _rows_html(context["sections"], context["b"])
    template = "board/_fragment.html" if fragment else "board/_content.html"
    html = render_template(template, owners=owners, due_filters=board_service.DUE_FILTERS,
                           page_sizes=board_service.PAGE_SIZES, sorts=board_service.SORTS, csrf_slot=CSRF_SLOT,
                           decree_sections=sections, entities=entities, groups=board_service.GROUPS,
                           as_of=_as_of(agency), **context, **extra)
    return html, tuple(filters.ignored)


def _as_of(agency):
    """The agency's newest audit event when the page was rendered: a bulk change over every matching row skips
    requirements audited after it (changed by someone after the page was shown)."""
    version = cache.data_version(agency.id)
    return version[0] if isinstance(version, tuple) else version


def _row_context(agency, rows):
    """What every row of a page shares (see templates/board/_rows.html)."""
    evidence, flags = board_service.row_extras(agency, rows)
    return SimpleNamespace(
        can_edit=can_edit(), req_url_base=_req_url_base(agency), today=utcnow().date(),
        due_state=board_service.due_state, sprite=url_for("static", filename="vendor/uswds/img/sprite.svg"),
        evidence=evidence, flags=flags, checked=(), statuses=STATUSES)


def _board_context(agency, modules, filters, decree_sections=()):
    page = board_service.board_page(agency, filters, modules, decree_sections)
    by_module = {}
    for r in page.rows:
        by_module.setdefault((r.section_id or 0) if filters.group == "section" else r.module_id, []).append(r)
    sections = [(s, by_module[s.module.id]) for s in page.modules if s.module.id in by_module]
    def page_url(n):
        return url_for("board.board", slug=agency.slug, **filters.view_args(page=n))

    def sort_url(key):
        desc = filters.sort == key and not filters.desc
        return url_for("board.board", slug=agency.slug, **filters.view_args(sort=key, dir="desc" if desc else "",
                                                                             page=1))

    return {
        "agency": agency, "modules": modules, "filters": filters, "page": page, "sections": sections,
        "b": _row_context(agency, page.rows), "page_url": page_url, "sort_url": sort_url,
    }


def _rows_html(sections, b):
    """{module id: the tbody's rows as one Markup}: cached rows where the key matches, the macro for the others."""
    macro = None
    rows_cache = cache.rows() if not b.checked else None
    out = {}
    for s, rows in sections:
        parts = []
        for r in rows:
            key = (tuple(r), b.flags.get(r.id), b.can_edit, b.today, b.req_url_base, b.sprite)
            html = cache.MISSING if rows_cache is None else rows_cache.get(key)
            if html is cache.MISSING:
                if macro is None:
                    macro = get_template_attribute("board/_rows.html", "view_row")
                html = str(macro(r, b))
                if rows_cache is not None:
                    rows_cache.put(key, html)
            parts.append(html)
        out[s.module.id] = Markup("".join(parts))  # noqa: S704 - rendered by the autoescaping macro
    return out


def _req_url_base(agency):
    """'/agencies/<slug>/requirements/' once per page instead of a url_for per row."""
    return url_for("board.requirement", slug=agency.slug, req_id=0)[:-1]


def _load(slug, req_id, roles=None):
    """Agency, then the requirement inside it (404 outside scope), then the role (403)."""
    agency = agency_or_404(slug)
    requirement = get_scoped_or_404(Requirement, req_id, agency)
    if roles is not None:
        require_role(roles)
    return agency, requirement


@bp.get("/agencies/<slug>/requirements/<int:req_id>")
@login_required
def requirement(slug, req_id):
    agency, req = _load(slug, req_id)
    return _requirement_page(agency, req)


def _requirement_page(agency, req, *, status=200, errors=None, conflict=None, submitted=None, forms=None):
    forms = forms or {}
    owners = board_service.owner_choices(agency.id)
    status_form = forms.get("status") or StatusForm(formdata=None, status=req.status, row_version=req.row_version)
    owner_form = forms.get("owner") or OwnerForm(formdata=None, owner_id=req.owner_id or 0,
                                                 row_version=req.row_version)
    owner_form.owner_id.choices = [(0, "Unassigned")] + [(u.id, u.display_name) for u in owners]
    due_form = forms.get("due") or DueDateForm(formdata=None, due_date=req.due_date, row_version=req.row_version)
    notes_form = forms.get("notes") or NotesForm(formdata=None, notes=req.notes, row_version=req.row_version)
    for form in (status_form, owner_form, due_form, notes_form):
        form.row_version.data = req.row_version if not conflict else req.row_version
    detail = board_service.requirement_detail(req, requests=g.agency_role in {"officer", "monitor", "admin"})
    return render_template(
        "board/requirement.html", agency=agency, req=req, detail=detail, errors=errors or {}, conflict=conflict,
        monitoring=monitoring_service.requirement_monitoring(agency, req, g.agency_role),
        submitted=submitted or {}, status_form=status_form, owner_form=owner_form, due_form=due_form,
        notes_form=notes_form, comment_form=forms.get("comment") or CommentForm(formdata=None),
        evidence_form=forms.get("evidence") or EvidenceForm(formdata=None),
    ), status


def _row_response(agency, req, *, status=200, errors=None, conflict=None, submitted=None, edit_mode=False,
                  focus="", saved=False):
    """The board row (a fragment for htmx), read again as plain values."""
    owners = board_service.owner_choices(agency.id) if edit_mode else []
    row = board_service.board_row(agency, req.id)
    return render_template("board/_row.html", r=row, b=_row_context(agency, [row]), owners=owners,
                           errors=errors or {}, conflict=conflict, submitted=submitted or {}, edit_mode=edit_mode,
                           focus=focus, saved=saved), status


@bp.get("/agencies/<slug>/requirements/<int:req_id>/row")
@login_required
def row(slug, req_id):
    """The board row in view mode, or (?edit=1, officers) in edit mode; a fragment for htmx."""
    agency, req = _load(slug, req_id)
    edit = request.args.get("edit") == "1" and can_edit()
    if not wants_fragment():
        return redirect(url_for("board.requirement", slug=slug, req_id=req.id), code=303)
    return _row_response(agency, req, edit_mode=edit, focus="first" if edit else "edit")


@bp.post("/agencies/<slug>/requirements/<int:req_id>/row")
@login_required
def save_row(slug, req_id):
    """The board row's one Save: status and note, owner, due date and reason."""
    agency, req = _load(slug, req_id, roles=EDIT_ROLES)
    form = RowForm()
    form.owner_id.choices = [(0, "Unassigned")]
    submitted = {name: request.form.get(name, "") for name in form._fields if name != "csrf_token"}
    errors, conflict = {}, None
    if not form.validate_on_submit():
        errors = field_errors(form)
        if "csrf_token" in errors:
            abort(400)
    else:
        try:
            changed = req_service.save_row(
                req, status=form.status.data, note=form.note.data, owner_id=form.owner_id.data,
                due_date=form.due_date.data, reason=form.reason.data, row_version=form.row_version.data,
                actor=current_user)
            db.session.commit()
        except (StaleDataError, req_service.Conflict):
            db.session.rollback()
            conflict = req = db.session.get(Requirement, req_id)
        except ValidationFailed as exc:
            db.session.rollback()
            errors = exc.errors
        else:
            flash(f"{req.code}: saved ({', '.join(changed)})." if changed else f"{req.code}: nothing to change.",
                  "success" if changed else "info")
            if wants_fragment():
                return _row_response(agency, req, focus="edit", saved=bool(changed))
            return redirect(url_for("board.board", slug=slug) + f"#req-{req.id}", code=303)
    return _row_refused(agency, req, errors, conflict, submitted)


def _row_refused(agency, req, errors, conflict, submitted):
    status = 409 if conflict is not None else 422
    if conflict is not None:
        flash(f"{req.code} was not saved: someone else saved it first. Both values are shown beside the form; "
              "your input is kept — save again to apply it.", "warning")
    else:
        flash(f"{req.code} was not saved: " + " ".join(errors.values()), "error")
    if wants_fragment():
        return _row_response(agency, req, status=status, errors=errors, conflict=conflict, submitted=submitted,
                             edit_mode=True, focus="conflict" if conflict is not None else "invalid")
    return _requirement_page(agency, req, status=status, errors=errors, conflict=conflict, submitted=submitted)


def _edit(slug, req_id, form_cls, key, apply, message):
    agency, req = _load(slug, req_id, roles=EDIT_ROLES)
    form = form_cls()
    if key == "owner":
        form.owner_id.choices = [(0, "Unassigned")] + [(u.id, u.display_name)
                                                       for u in board_service.owner_choices(agency.id)]
    submitted = {name: request.form.get(name, "") for name in form._fields if name not in ("csrf_token", "submit")}
    errors, conflict = {}, None
    if not form.validate_on_submit():
        errors = field_errors(form)
        if "csrf_token" in errors:
            abort(400)
    else:
        try:
            changed = apply(req, form)
            db.session.commit()
        except StaleDataError:
            # A version clash found by an autoflush or the commit itself, not by the service's own flush.
            db.session.rollback()
            conflict = req = db.session.get(Requirement, req_id)
        except req_service.Conflict as exc:
            db.session.rollback()
            conflict, req = exc.requirement, db.session.get(Requirement, req.id)
        except ValidationFailed as exc:
            db.session.rollback()
            errors = exc.errors
        else:
            if changed:
                flash(message(req), "success")
            if wants_fragment():
                return _row_response(agency, req, focus="edit", saved=bool(changed))
            return redirect(safe_next(request.form.get("next"), url_for("board.requirement", slug=slug, req_id=req.id)),
                            code=303)
    status = 409 if conflict is not None else 422
    if conflict is not None:
        flash("Someone else saved this requirement first. Their values are shown; your input is kept "
              "in the form — save again to apply it.", "warning")
    else:
        flash("Not saved: " + " ".join(errors.values()), "error")
    if wants_fragment():
        return _row_response(agency, req, status=status, errors=errors, conflict=conflict, submitted=submitted,
                             edit_mode=True, focus="conflict" if conflict is not None else "invalid")
    apply_errors(form, errors)
    form.row_version.data = req.row_version
    return _requirement_page(agency, req, status=status, errors=errors, conflict=conflict, submitted=submitted,
                             forms={key: form})


@bp.post("/agencies/<slug>/requirements/<int:req_id>/status")
@login_required
def set_status(slug, req_id):
    return _edit(slug, req_id, StatusForm, "status",
                 lambda req, f: req_service.set_status(req, f.status.data, f.note.data, f.row_version.data,
                                                       actor=current_user),
                 lambda req: f"{req.code}: status is now {req.status_label}.")


@bp.post("/agencies/<slug>/requirements/<int:req_id>/owner")
@login_required
def set_owner(slug, req_id):
    return _edit(slug, req_id, OwnerForm, "owner",
                 lambda req, f: req_service.set_owner(req, f.owner_id.data, f.row_version.data, actor=current_user),
                 lambda req: f"{req.code}: owner is now {req.owner.display_name if req.owner else 'nobody'}.")


@bp.post("/agencies/<slug>/requirements/<int:req_id>/due-date")
@login_required
def set_due_date(slug, req_id):
    return _edit(slug, req_id, DueDateForm, "due",
                 lambda req, f: req_service.set_due_date(req, f.due_date.data, f.reason.data, f.row_version.data,
                                                         actor=current_user),
                 lambda req: f"{req.code}: due date is now {req.due_date.isoformat() if req.due_date else 'none'}.")


@bp.post("/agencies/<slug>/requirements/<int:req_id>/notes")
@login_required
def set_notes(slug, req_id):
    return _edit(slug, req_id, NotesForm, "notes",
                 lambda req, f: req_service.set_notes(req, f.notes.data, f.row_version.data, actor=current_user),
                 lambda req: f"{req.code}: notes saved.")


@bp.post("/agencies/<slug>/requirements/<int:req_id>/comments")
@login_required
def add_comment(slug, req_id):
    agency, req = _load(slug, req_id, roles=COMMENT_ROLES)
    form = CommentForm()
    if repeat := repeat_response(current_user):
        return repeat
    if form.validate_on_submit():
        try:
            req_service.add_comment(req, form.body.data, actor=current_user)
            target = url_for("board.requirement", slug=slug, req_id=req.id) + "#comments"
            submissions.remember(current_user, target)
            db.session.commit()
            flash("Comment posted.", "success")
            return redirect(target, code=303)
        except ValidationFailed as exc:
            db.session.rollback()
            apply_errors(form, exc.errors)
        except IntegrityError:
            # A repeat that raced its first sending: point it at the winner's result.
            db.session.rollback()
            if repeat := repeat_response(current_user):
                return repeat
            raise
    return _requirement_page(agency, req, status=422, forms={"comment": form})


def _bulk_versions(agency, form_data):
    """{requirement_id: row_version seen} from the ticked rows; with "all", every requirement matching the
    filters the page showed (None: checked against the page's data version instead)."""
    versions = {}
    for item in form_data.getlist("ids"):
        req_id, _, version = item.partition(":")
        if req_id.isdigit() and version.isdigit():
            versions[int(req_id)] = int(version)
    if form_data.get("all") == "1":
        filter_args = {k[len("filter_"):]: v for k, v in form_data.items() if k.startswith("filter_")}
        modules = _modules()
        owners = board_service.owner_choices(agency.id)
        filters = board_service.BoardFilters.from_args(filter_args, {m.key for m in modules}, [u.id for u in owners])
        for req_id in board_service.matching_ids(agency, filters):
            versions.setdefault(req_id, None)
    return versions


@bp.post("/agencies/<slug>/requirements/bulk")
@login_required
def bulk(slug):
    """One change (owner, status with a note, or due date with a reason) to the selected requirements, in one
    transaction; rows someone else changed meanwhile are named and left as they are."""
    agency = agency_or_404(slug)
    require_role(EDIT_ROLES)
    form = BulkForm()
    if not form.validate_on_submit():
        errors = field_errors(form)
        if "csrf_token" in errors:
            abort(400)
        return _bulk_refused(agency, errors)
    change = request.form.get("change", "")
    value = {"owner": form.owner_id.data, "status": form.status.data, "due": form.due_date.data}.get(change)
    text = form.reason.data if change == "due" else form.note.data
    as_of = int(form.as_of.data) if (form.as_of.data or "").isdigit() else 0
    try:
        applied, conflicts = req_service.bulk_update(agency.id, _bulk_versions(agency, request.form), change, value,
                                                     text, actor=current_user, changed_since=as_of)
        db.session.commit()
    except ValidationFailed as exc:
        db.session.rollback()
        return _bulk_refused(agency, exc.errors)
    what = req_service.BULK_ACTIONS[change]
    flash(f"{what.capitalize()} set for {len(applied)} requirement{'' if len(applied) == 1 else 's'}"
          + (f": {', '.join(r.code for r in applied[:20])}{' …' if len(applied) > 20 else ''}." if applied else "."),
          "success" if applied else "info")
    if conflicts:
        flash(f"Not changed, because someone else changed {'it' if len(conflicts) == 1 else 'them'} after the page "
              f"was shown: {', '.join(r.code for r in conflicts)}. Check {'it' if len(conflicts) == 1 else 'them'} "
              "and try again.", "warning")
    filter_args = {k[len("filter_"):]: v for k, v in request.form.items() if k.startswith("filter_") and v}
    return redirect(url_for("board.board", slug=slug, **filter_args), code=303)


def _bulk_refused(agency, errors):
    """The board again (not cached), with the errors above the bulk form and the user's input kept."""
    db.session.rollback()
    flash("Nothing was changed: " + " ".join(errors.values()), "error")
    filter_args = {k[len("filter_"):]: v for k, v in request.form.items() if k.startswith("filter_")}
    bulk_input = {k: request.form.get(k, "") for k in ("owner_id", "status", "note", "due_date", "reason")}
    checked = [int(i.partition(":")[0]) for i in request.form.getlist("ids") if i.partition(":")[0].isdigit()]
    html, _ignored = _render_board(agency, filter_args, False, checked, bulk_errors=errors, bulk_input=bulk_input)
    return _board_page(agency, html, status=422)
