"""Who may see what. Every agency-scoped view goes through these helpers.

Outside a user's memberships the answer is 404, never a hint that the thing exists.
Inside them, a role that may not do something gets 403.
"""
import functools
from collections import namedtuple

import sqlalchemy as sa
from flask import abort, g
from flask_login import current_user

from tracker.extensions import db
from tracker.models import Agency, Membership, Requirement

WRITE_ROLES = {"officer"}
# Restricted evidence is for the agency and its monitors; committee members get shareable items only.
RESTRICTED_EVIDENCE_ROLES = {"officer", "monitor", "admin"}


def memberships():
    """The current user's memberships, loaded once per request."""
    if "memberships" not in g:
        if not current_user.is_authenticated:
            g.memberships = []
        else:
            g.memberships = db.session.execute(_statement("memberships"), {"user": current_user.id}).scalars().all()
    return g.memberships


@functools.cache
def _statement(name):
    """What every page asks (memberships, the agency, the role, the navigation's agencies): built once and run
    with parameters; building a statement costs about as much as running a small one."""
    user, agency, limit = sa.bindparam("user"), sa.bindparam("agency"), sa.bindparam("limit")
    return {
        # Roles and ids only: the agencies (with their joined rows) are not loaded for every page, which
        # for a user in 200 agencies cost 15 ms a request (issue 17/18); user_agencies() reads them itself.
        "memberships": lambda: sa.select(Membership).where(Membership.user_id == user)
        .options(sa.orm.lazyload(Membership.agency)),
        "first agencies": lambda: sa.select(Agency.name, Agency.slug).order_by(Agency.name).limit(limit),
        "first agencies of": lambda: sa.select(Agency.name, Agency.slug)
        .join(Membership, Membership.agency_id == Agency.id).where(Membership.user_id == user)
        .order_by(Agency.name).limit(limit),
        "role": lambda: sa.select(Membership.role).where(Membership.user_id == user, Membership.agency_id == agency),
        # Nothing eager with it (the agency's instruments load when a page uses them): a found row costs no more.
        "agency": lambda: sa.select(Agency).where(Agency.slug == sa.bindparam("slug")).options(sa.orm.lazyload("*")),
    }[name]()


def membership_agency_ids():
    """Ids of the agencies the current user belongs to (the memberships are light: no agency rows)."""
    return [m.agency_id for m in memberships()]


def agency_ids_with_role(role):
    """Ids of the agencies where the current user holds `role`, from the memberships already loaded."""
    return sorted(m.agency_id for m in memberships() if m.role == role)


def user_agencies():
    """Agencies the current user can open: all for an admin, their memberships otherwise."""
    if not current_user.is_authenticated:
        return []
    if current_user.is_admin:
        return db.session.execute(sa.select(Agency).order_by(Agency.name)).scalars().all()
    return db.session.execute(sa.select(Agency).join(Membership, Membership.agency_id == Agency.id)
                              .where(Membership.user_id == current_user.id).order_by(Agency.name)).scalars().all()


NavLink = namedtuple("NavLink", "name slug")


def nav_agencies(limit=6):
    """The first agencies for the navigation bar, without loading every agency an admin can see."""
    from tracker import cache

    if not current_user.is_authenticated:
        return []
    if current_user.is_admin:
        return cache.value("nav-agencies", limit, lambda: tuple(NavLink(*row) for row in db.session.execute(
            _statement("first agencies"), {"limit": limit})))
    return [NavLink(*row) for row in db.session.execute(_statement("first agencies of"),
                                                        {"user": current_user.id, "limit": limit})]


def role_in(agency):
    """'admin', the membership role, or None."""
    return _role_for(agency.id)


def _role_for(agency_id):
    if not current_user.is_authenticated:
        return None
    if current_user.is_admin:
        return "admin"
    if "memberships" in g:
        return next((m.role for m in g.memberships if m.agency_id == agency_id), None)
    # A user may belong to many agencies; a page about one needs one membership row.
    return db.session.execute(_statement("role"), {"user": current_user.id, "agency": agency_id}).scalar_one_or_none()


def agency_or_404(slug, roles=None):
    """Load an agency the current user belongs to; 404 outside scope, 403 for a role not in `roles`.

    Another agency's slug and a slug that does not exist take the same path (issue 19): the membership query
    runs for both (with an id no agency has) and both write the denial line, so timing tells them apart no
    more than the answer does."""
    agency = db.session.execute(_statement("agency"), {"slug": slug}).scalar_one_or_none()
    role = _role_for(agency.id if agency is not None else 0)
    if role is None or agency is None:
        _log_denied(slug)
        abort(404)
    if roles is not None and role not in roles and role != "admin":
        abort(403)
    g.agency_role = role
    return agency


def require_role(roles):
    """403 unless the current user's role in the agency loaded by agency_or_404 is in `roles` (or admin)."""
    if g.get("agency_role") not in set(roles) | {"admin"}:
        abort(403)


def sees_restricted_evidence():
    """Whether the current user's role in the agency loaded by agency_or_404 opens restricted evidence."""
    return g.get("agency_role") in RESTRICTED_EVIDENCE_ROLES


def may_download(evidence):
    """Whether the current user may open this evidence item of the agency loaded by agency_or_404."""
    return evidence.visibility == "shareable" or sees_restricted_evidence()


def _log_denied(slug):
    from flask import request

    from tracker.services.audit import log_security

    log_security("authz.denied", outcome="failure", ip=request.remote_addr, path=request.path,
                 method=request.method, agency=str(slug)[:100],
                 actor=current_user.email if current_user.is_authenticated else "anonymous")


def get_scoped_or_404(model, object_id, agency):
    """Load one row that belongs to `agency`; anything else (missing or another agency's) is 404."""
    if hasattr(model, "agency_id"):
        query = sa.select(model).where(model.id == object_id, model.agency_id == agency.id)
    elif hasattr(model, "requirement_id"):
        query = (sa.select(model).join(Requirement, model.requirement_id == Requirement.id)
                 .where(model.id == object_id, Requirement.agency_id == agency.id))
    else:
        raise TypeError(f"{model.__name__} is not agency-scoped")
    obj = db.session.execute(query).scalar_one_or_none()
    if obj is None:
        abort(404)
    return obj


def require_admin():
    if not (current_user.is_authenticated and current_user.is_admin):
        abort(404)
