"""Template globals and filters."""
from flask_login import current_user

from tracker.access import may_download, membership_agency_ids, memberships, nav_agencies
from tracker.models import AGENCY_ROLES, CITATION_BASIS, STATUSES
from tracker.models.base import utcnow
from tracker.services.submissions import hidden_field


def _waiting():
    from flask import g

    from tracker.services.reviews import waiting_counts

    # Only the navigation fragment asks, and it is cached per user and data version (_nav_links).
    if "waiting" not in g:
        g.waiting = waiting_counts(current_user._get_current_object(), memberships())
    return g.waiting


def _nav_links():
    """The signed-in user's navigation links: the same HTML on every page until the data changes."""
    from flask import render_template

    from tracker import cache

    user = current_user._get_current_object()
    # Its counts are about the user's own agencies; an admin's are about all of them.
    agencies = cache.ALL if user.is_admin else membership_agency_ids()
    return cache.html("nav", (user.id,), lambda: render_template("_nav.html"), agencies)


def register(app):
    app.jinja_env.globals["submission_field"] = hidden_field

    @app.context_processor
    def globals_():
        return {
            "STATUSES": STATUSES,
            "AGENCY_ROLES": AGENCY_ROLES,
            "CITATION_BASIS": CITATION_BASIS,
            "nav_agencies": nav_agencies,
            "may_download": may_download,
            "user_memberships": memberships,
            "nav_waiting": _waiting if current_user.is_authenticated else (lambda: {}),
            "nav_links": _nav_links,
            "today": utcnow().date(),
        }

    @app.template_filter("nav_count")
    def nav_count(n):
        """A navigation badge's figure: exact up to NAV_CAP, then "999+" (the page behind it has the exact one)."""
        from tracker.services.reviews import NAV_CAP

        return f"{NAV_CAP}+" if n > NAV_CAP else n

    @app.template_filter("date")
    def format_date(value):
        if value is None:
            return "—"
        return value.strftime("%b %-d, %Y")

    @app.template_filter("datetime")
    def format_datetime(value):
        if value is None:
            return "—"
        return value.strftime("%b %-d, %Y %H:%M UTC")

    @app.template_filter("due_class")
    def due_class(requirement):
        """'overdue', 'soon' (within 30 days) or '': only an open requirement's due date binds."""
        if requirement.due_date is None or not requirement.is_open:
            return ""
        days = (requirement.due_date - utcnow().date()).days
        if days < 0:
            return "overdue"
        if days <= 30:
            return "soon"
        return ""
