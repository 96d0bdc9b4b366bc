"""E-mail notifications: categories, per-user preferences, follows, and the events that notify.

An event calls one of the functions at the bottom inside the transaction of the change that causes it.
`notify` writes one Notification per recipient; an immediate one also gets its OutboxMessage there, so a
change that rolls back sends nothing and a change that commits cannot lose its mail. Daily and weekly
notifications wait for the digest (services/outbox.py). Recipients are scoped exactly like pages: a
member of the event's agency holding a role that sees it (CATEGORY_ROLES), active, and not the actor.
"""
import contextvars
import re
from collections import defaultdict
from contextlib import contextmanager

import sqlalchemy as sa
from flask import current_app, has_request_context, request
from itsdangerous import BadSignature, URLSafeTimedSerializer
from werkzeug.routing import BuildError

from tracker.extensions import db
from tracker.models import (
    DELIVERY_MODES,
    Agency,
    Membership,
    Notification,
    NotificationPreference,
    OutboxMessage,
    Requirement,
    RequirementFollow,
    User,
    utcnow,
)
from tracker.services import audit
from tracker.services.errors import ValidationFailed

CATEGORIES = {
    "assigned": "You are made owner of a requirement",
    "deadline": "Deadlines of requirements you own or follow: 30, 7 and 1 days before, and when one passes",
    "evidence_returned": "Evidence you uploaded or own returned by the monitor",
    "evidence_review": "New evidence waiting for your review",
    "document_request": "Document requests to your agency: opened, due soon, overdue",
    "committee_recommendation": "Committee recommendations awaiting the agency's response",
    "committee_response": "The agency's responses to the committee's recommendations",
    "comment": "Comments and status changes on requirements you own or follow",
    "period": "A monitor's draft report shared with the agency, or a report filed",
    "policy_review": "Policies and curricula sent for your review or for the committee's comment",
    "account": "Your account changed: password, two-step sign-in, new tokens, lockout (always sent)",
}
ALWAYS_ON = "account"
# Who may receive each category about an agency: the roles that see the thing on the pages.
CATEGORY_ROLES = {
    "assigned": {"officer"},
    "deadline": {"officer", "monitor", "committee"},
    "evidence_returned": {"officer"},
    "evidence_review": {"monitor"},
    "document_request": {"officer"},
    "committee_recommendation": {"officer"},
    "committee_response": {"committee"},
    "comment": {"officer", "monitor", "committee"},
    "period": {"officer"},
    "policy_review": {"monitor", "committee"},
}
# Defaults per role; a user with several roles gets the most frequent of theirs. Missing: off.
DEFAULTS = {
    "officer": {"assigned": "immediate", "deadline": "immediate", "evidence_returned": "immediate",
                "document_request": "immediate", "committee_recommendation": "immediate", "comment": "daily",
                "period": "immediate"},
    "monitor": {"evidence_review": "daily", "deadline": "weekly", "comment": "daily", "policy_review": "immediate"},
    "committee": {"committee_response": "immediate", "comment": "weekly", "policy_review": "immediate"},
}
EAGERNESS = {"off": 0, "weekly": 1, "daily": 2, "immediate": 3}
UNSUBSCRIBE_DAYS = 90
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]+")


def one_line(text, limit=300):
    """A header-safe line: control characters (CR, LF, ...) become a space; at most `limit` characters."""
    text = " ".join(_CONTROL.sub(" ", str(text or "")).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- preferences -------------------------------------------------------------------------------------

def _roles_by_user(user_ids):
    roles = defaultdict(set)
    if user_ids:
        for user_id, role in db.session.execute(
                sa.select(Membership.user_id, Membership.role).where(Membership.user_id.in_(user_ids))):
            roles[user_id].add(role)
    return roles


def default_mode(roles, category):
    if category == ALWAYS_ON:
        return "immediate"
    modes = [DEFAULTS.get(role, {}).get(category, "off") for role in roles]
    return max(modes, key=EAGERNESS.get, default="off")


def modes(user_ids, category):
    """{user_id: mode} for one category: the user's own choice, else their roles' default (2 queries)."""
    user_ids = list(user_ids)
    if category == ALWAYS_ON:
        return dict.fromkeys(user_ids, "immediate")
    chosen = dict(db.session.execute(
        sa.select(NotificationPreference.user_id, NotificationPreference.mode).where(
            NotificationPreference.user_id.in_(user_ids), NotificationPreference.category == category)).all()
    ) if user_ids else {}
    roles = _roles_by_user([u for u in user_ids if u not in chosen])
    return {u: chosen.get(u) or default_mode(roles[u], category) for u in user_ids}


def relevant_categories(user):
    """The categories a user can receive (by the roles they hold anywhere), account last."""
    roles = _roles_by_user([user.id])[user.id]
    if user.is_admin:
        roles |= set(DEFAULTS)
    return [c for c in CATEGORIES if c == ALWAYS_ON or CATEGORY_ROLES[c] & roles]


def preference_rows(user):
    """[(category, label, mode, is_default)] for the account page."""
    roles = _roles_by_user([user.id])[user.id]
    chosen = dict(db.session.execute(sa.select(NotificationPreference.category, NotificationPreference.mode)
                                     .where(NotificationPreference.user_id == user.id)).all())
    rows = []
    for category in relevant_categories(user):
        default = default_mode(roles, category)
        mode = default if category == ALWAYS_ON else chosen.get(category, default)
        rows.append((category, CATEGORIES[category], mode, category not in chosen))
    return rows


def set_preferences(user, values, *, actor, action="notification.preferences"):
    """values: {category: mode} from the form. Unknown categories or modes are refused, nothing changes."""
    allowed = [c for c in relevant_categories(user) if c != ALWAYS_ON]
    errors, wanted = {}, {}
    for category in allowed:
        mode = values.get(category)
        if mode is None:
            continue
        if mode not in DELIVERY_MODES:
            errors[category] = f"{CATEGORIES[category]}: choose one of {', '.join(DELIVERY_MODES.values())}."
        wanted[category] = mode
    if errors:
        raise ValidationFailed(errors)
    current = {p.category: p for p in db.session.execute(
        sa.select(NotificationPreference).where(NotificationPreference.user_id == user.id)).scalars()}
    changed = {}
    for category, mode in wanted.items():
        row = current.get(category)
        if row is None:
            db.session.add(NotificationPreference(user_id=user.id, category=category, mode=mode))
        elif row.mode != mode:
            row.mode = mode
        else:
            continue
        changed[category] = mode
    if changed:
        db.session.flush()
        audit.record(action, user, actor=actor, after=changed)
    return changed


# --- follows -----------------------------------------------------------------------------------------

def is_following(user, requirement):
    return db.session.get(RequirementFollow, (user.id, requirement.id)) is not None


def set_follow(user, requirement, follow, *, actor):
    row = db.session.get(RequirementFollow, (user.id, requirement.id))
    if bool(follow) == (row is not None):
        return False
    if follow:
        db.session.add(RequirementFollow(user_id=user.id, requirement_id=requirement.id))
    else:
        db.session.delete(row)
    db.session.flush()
    audit.record("requirement.follow" if follow else "requirement.unfollow", requirement, actor=actor,
                 after={"user": user.email})
    return True


def followed(user):
    """(Requirement, Agency) rows the user follows, in agencies they still belong to (or all, for an admin)."""
    query = (sa.select(Requirement, Agency).join(RequirementFollow, RequirementFollow.requirement_id == Requirement.id)
             .join(Agency, Agency.id == Requirement.agency_id).where(RequirementFollow.user_id == user.id)
             .order_by(Agency.name, Requirement.sort_key))
    if not user.is_admin:
        query = query.where(Requirement.agency_id.in_(
            sa.select(Membership.agency_id).where(Membership.user_id == user.id)))
    return db.session.execute(query).all()


def followers(requirement_ids):
    """{requirement_id: {user_id, ...}}."""
    result = defaultdict(set)
    if requirement_ids:
        for req_id, user_id in db.session.execute(
                sa.select(RequirementFollow.requirement_id, RequirementFollow.user_id)
                .where(RequirementFollow.requirement_id.in_(list(requirement_ids)))):
            result[req_id].add(user_id)
    return result


# --- links and tokens --------------------------------------------------------------------------------

def path_for(endpoint, **values):
    """A site path built from the URL map, with or without a request (CLI reminders)."""
    try:
        return current_app.url_map.bind("localhost").build(endpoint, values)
    except BuildError:
        return "/"


def base_url():
    configured = current_app.config.get("MAIL_BASE_URL")
    if configured:
        return configured.rstrip("/")
    if has_request_context():
        return request.host_url.rstrip("/")
    return "http://127.0.0.1:8000"


def absolute(path):
    return base_url() + path


def _serializer():
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt="notification-unsubscribe")


def unsubscribe_token(user_id, categories):
    return _serializer().dumps({"u": user_id, "c": sorted(set(categories) - {ALWAYS_ON})})


def read_unsubscribe_token(token):
    """(user, [categories]) or None for a token that is forged, expired or names nothing to stop."""
    try:
        data = _serializer().loads(token, max_age=UNSUBSCRIBE_DAYS * 86400)
    except BadSignature:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("u"), int) or not isinstance(data.get("c"), list):
        return None
    categories = [c for c in data["c"] if c in CATEGORIES and c != ALWAYS_ON]
    user = db.session.get(User, data["u"])
    if user is None or not categories:
        return None
    return user, categories


def unsubscribe(user, categories):
    """Turn the categories off for the user (the one-click link; no sign-in). Audited as the user."""
    return set_preferences(user, dict.fromkeys(categories, "off"), actor=user, action="notification.unsubscribe")


def unsubscribe_url(user_id, categories):
    return absolute(path_for("notifications.unsubscribe", token=unsubscribe_token(user_id, categories)))


# --- writing notifications ---------------------------------------------------------------------------

def _recipients(user_ids, agency_id, category):
    """Active users among user_ids who may receive this category about the agency (one query)."""
    if not user_ids:
        return []
    query = sa.select(User).where(User.id.in_(list(user_ids)), User.active.is_(True))
    if agency_id is not None:  # admins see every agency (they reach these lists only by following)
        query = query.where(sa.or_(User.is_admin.is_(True), User.id.in_(sa.select(Membership.user_id).where(
            Membership.agency_id == agency_id, Membership.role.in_(CATEGORY_ROLES[category])))))
    return db.session.execute(query.order_by(User.id)).scalars().all()


def members(agency_id, roles):
    """Ids of the agency's active members holding one of `roles`."""
    return set(db.session.execute(sa.select(Membership.user_id).join(User, User.id == Membership.user_id).where(
        Membership.agency_id == agency_id, Membership.role.in_(list(roles)), User.active.is_(True))).scalars())


def render_message(user, category, subject, lines, link, agency_name=None):
    """(text, html, unsubscribe url) of a single-event message."""
    unsubscribe = "" if category == ALWAYS_ON else unsubscribe_url(user.id, [category])
    context = {"name": one_line(user.display_name, 200), "subject": subject, "lines": lines,
               "link": absolute(link) if link else "",
               "category_label": CATEGORIES[category], "unsubscribe": unsubscribe, "agency_name": agency_name,
               "preferences": absolute(path_for("auth.account")) + "#notifications"}
    return render_mail("mail/message.txt", context), render_mail("mail/message.html", context), unsubscribe


def render_mail(name, context):
    """A mail template, with no page context (no request, no signed-in user: the CLI renders these too)."""
    return current_app.jinja_env.get_template(name).render(context)


def outbox_message(user, category, subject, text, html, unsubscribe, dedupe_key=None):
    message = OutboxMessage(user_id=user.id, to_addr=user.email, category=category, subject=one_line(subject),
                            body_text=text, body_html=html, unsubscribe_url=unsubscribe, dedupe_key=dedupe_key,
                            state="queued", attempts=0, next_attempt_at=utcnow())
    db.session.add(message)
    return message


# The events of one action over many requirements (a bulk edit), collected while batched() is open.
_batch = contextvars.ContextVar("notification_batch", default=None)
BATCH_SUBJECTS = {"assigned": "you are the owner of {n} requirements",
                  "comment": "{n} requirements you own or follow changed"}


@contextmanager
def batched():
    """One action that changes many requirements tells each recipient once per category, one line per change
    ("you are the owner of 30 requirements"), instead of sending 30 e-mails. The notifications are written when
    the block ends, in the same transaction as the changes; nothing is written if the block raises."""
    events = []
    token = _batch.set(events)
    try:
        yield
    finally:
        _batch.reset(token)
    by_recipient = defaultdict(list)
    for event in events:
        category, user_ids, agency = event[:3]
        for user_id in user_ids:
            by_recipient[(category, agency.id if agency is not None else None, user_id)].append(event)
    for (category, _agency_id, user_id), items in by_recipient.items():
        _category, _ids, agency, subject, lines, link, actor = items[0]
        if len(items) > 1:
            subject = BATCH_SUBJECTS.get(category, "{n} changes").format(n=len(items))
            lines = [line for item in items for line in item[4]]
            link = path_for("board.board", slug=agency.slug) if agency is not None else link
        notify(category, [user_id], agency=agency, subject=subject, lines=lines, link=link, actor=actor)


def notify(category, user_ids, *, agency, subject, lines, link="", actor=None, dedupe=None):
    """Write the notifications of one event; returns them. `dedupe(user_id)` gives a key that makes a
    computed event (a reminder) happen once: recipients whose key exists already are skipped. Inside
    batched(), the event is collected and written when the batch ends."""
    assert category in CATEGORIES
    pending = _batch.get()
    if pending is not None and dedupe is None:
        pending.append((category, set(user_ids), agency, subject, lines, link, actor))
        return []
    ids = set(user_ids)
    if actor is not None and category != ALWAYS_ON:
        ids.discard(actor.id)  # nobody is told about their own change
    agency_id = agency.id if agency is not None else None
    users = _recipients(ids, agency_id, category)
    chosen = modes([u.id for u in users], category)
    subject = one_line(f"[{agency.name}] {subject}" if agency is not None else subject)
    lines = [one_line(line, 1000) for line in lines]
    written, messages = [], []
    for user in users:
        mode = chosen[user.id]
        if mode == "off":
            continue
        note = Notification(user_id=user.id, agency_id=agency_id, category=category, subject=subject,
                            body="\n".join(lines), link=link, delivery=mode,
                            dedupe_key=dedupe(user.id) if dedupe else None)
        if mode == "immediate":
            text, html, unsubscribe = render_message(user, category, subject, lines, link,
                                                     agency.name if agency is not None else None)
            messages.append((note, outbox_message(user, category, subject, text, html, unsubscribe)))
        written.append(note)
    if messages:
        db.session.flush()  # the messages' ids
        for note, message in messages:
            note.message_id = message.id
    if written:
        db.session.add_all(written)
        db.session.flush()
    return written


def existing_keys(keys):
    keys = list(keys)
    if not keys:
        return set()
    return set(db.session.execute(sa.select(Notification.dedupe_key).where(Notification.dedupe_key.in_(keys)))
               .scalars())


# --- the events --------------------------------------------------------------------------------------

def _agency(agency_id):
    return db.session.get(Agency, agency_id)


def _req_link(requirement):
    return path_for("board.requirement", slug=_agency(requirement.agency_id).slug, req_id=requirement.id)


def owner_assigned(requirement, owner, *, actor):
    if owner is None:
        return []
    who = actor.display_name if actor else "Someone"
    return notify("assigned", [owner.id], agency=_agency(requirement.agency_id), actor=actor,
                  subject=f"{requirement.code}: you are the owner",
                  lines=[f"{who} made you the owner of {requirement.code}: {requirement.title}."],
                  link=_req_link(requirement))


def evidence_submitted(evidence, requirement, *, actor):
    agency = _agency(requirement.agency_id)
    ids = members(agency.id, {"monitor"})
    return notify("evidence_review", ids, agency=agency, actor=actor,
                  subject=f"{requirement.code}: new evidence to review",
                  lines=[f"New evidence for {requirement.code}: {requirement.title} is waiting for review: "
                         f"“{evidence.title}”."],
                  link=path_for("reviews.review", slug=agency.slug, evidence_id=evidence.id))


def evidence_returned(evidence, requirement, *, actor):
    ids = {evidence.uploaded_by_id, requirement.owner_id} - {None}
    ids |= followers([requirement.id])[requirement.id]
    return notify("evidence_returned", ids, agency=_agency(requirement.agency_id), actor=actor,
                  subject=f"{requirement.code}: evidence returned",
                  lines=[f"The monitor returned “{evidence.title}” for {requirement.code}: {requirement.title}. "
                         "The comment is on the requirement page."],
                  link=_req_link(requirement))


def comment_added(comment, requirement, *, actor):
    ids = ({requirement.owner_id} - {None}) | followers([requirement.id])[requirement.id]
    who = actor.display_name if actor else "Someone"
    return notify("comment", ids, agency=_agency(requirement.agency_id), actor=actor,
                  subject=f"{requirement.code}: new comment",
                  lines=[f"{who} commented on {requirement.code}: {requirement.title}."],
                  link=_req_link(requirement) + "#comments")


def status_changed(requirement, old, *, actor):
    ids = ({requirement.owner_id} - {None}) | followers([requirement.id])[requirement.id]
    who = actor.display_name if actor else "Someone"
    return notify("comment", ids, agency=_agency(requirement.agency_id), actor=actor,
                  subject=f"{requirement.code}: status {requirement.status_label}",
                  lines=[f"{who} changed the status of {requirement.code}: {requirement.title} to "
                         f"{requirement.status_label}."],
                  link=_req_link(requirement))


def request_opened(doc_request, *, actor):
    agency = _agency(doc_request.agency_id)
    codes = ", ".join(r.code for r in doc_request.requirements[:5])
    return notify("document_request", members(agency.id, {"officer"}), agency=agency, actor=actor,
                  subject=f"Request {doc_request.number} ({codes}): due {doc_request.due_date:%Y-%m-%d}",
                  lines=[f"The monitor asks for: {doc_request.title}.", f"Due {_long_date(doc_request.due_date)}."],
                  link=path_for("requests.show", slug=agency.slug, request_id=doc_request.id))


def recommendation_submitted(recommendation, *, actor):
    """For issue 14: the committee submitted a recommendation; the agency's officers must respond."""
    agency = _agency(recommendation.agency_id)
    due = f", response due {recommendation.response_due:%Y-%m-%d}" if recommendation.response_due else ""
    return notify("committee_recommendation", members(agency.id, {"officer"}), agency=agency, actor=actor,
                  subject=f"Committee recommendation {recommendation.number}{due}",
                  lines=[f"The advisory committee submitted recommendation {recommendation.number}: "
                         f"{recommendation.title}. It awaits the agency's written response."],
                  link=path_for("committee.recommendation", slug=agency.slug, rec_id=recommendation.id))


def response_posted(recommendation, *, actor):
    """For issue 14: the agency answered a committee recommendation; the committee's members are told."""
    agency = _agency(recommendation.agency_id)
    return notify("committee_response", members(agency.id, {"committee"}), agency=agency, actor=actor,
                  subject=f"Response to committee recommendation {recommendation.number}",
                  lines=[f"The agency responded to recommendation {recommendation.number}: {recommendation.title}."],
                  link=path_for("committee.recommendation", slug=agency.slug, rec_id=recommendation.id))


def period_shared(period, *, actor):
    """For issue 13: the monitor shared the draft report of a period with the agency."""
    return _period_event(period, actor, f"{period.name}: draft shared",
                         f"The monitor shared the draft report {period.name} with the agency for comment.")


def period_filed(period, *, actor):
    """For issue 13: the report of a period was filed with the court."""
    ref = f" ({period.docket_ref})" if getattr(period, "docket_ref", "") else ""
    return _period_event(period, actor, f"{period.name}: report filed",
                         f"The monitor's report {period.name} was filed with the court{ref}.")


def _period_event(period, actor, subject, line):
    agency = _agency(period.agency_id)
    return notify("period", members(agency.id, CATEGORY_ROLES["period"]), agency=agency, actor=actor,
                  subject=subject, lines=[line],
                  link=path_for("monitoring.period", slug=agency.slug, period_id=period.id))


def policy_event(event, doc, obj, *, actor):
    """For issue 16 (services/policies.py): a review round opened (the agency's monitors comment within the
    period) or a community comment window opened (the committee's members)."""
    agency = _agency(doc.agency_id)
    if event == "review_round_opened":
        roles, subject = {"monitor"}, f"{doc.title}: review, comments due {obj.comment_due:%Y-%m-%d}"
        line = f"“{doc.title}” is sent for review; comments are due by {_long_date(obj.comment_due)}."
    elif event == "comment_window_opened":
        roles, subject = {"committee"}, f"{doc.title}: open for comment until {obj.closes_on:%Y-%m-%d}"
        line = f"“{doc.title}” is open for the committee's comment until {_long_date(obj.closes_on)}."
    else:
        return []
    return notify("policy_review", members(agency.id, roles), agency=agency, actor=actor, subject=subject,
                  lines=[line], link=path_for("policies.document", slug=agency.slug, doc_id=doc.id))


ACCOUNT_EVENTS = {
    "password_change": "Your password was changed.",
    "password_reset": "An administrator set a new password for your account and signed out its sessions.",
    "mfa_enable": "Two-step sign-in was turned on for your account.",
    "mfa_reset": "An administrator turned off two-step sign-in for your account.",
    "token_api": "A new API token was created for your account.",
    "token_calendar": "A new calendar feed address was created for your account.",
    "lockout": "Your account was locked after repeated failed sign-in attempts.",
}


def account_changed(user, event, *, actor=None, name=""):
    """Always sent, immediately. Says what happened, never a secret (no password, token or code)."""
    lines = [ACCOUNT_EVENTS[event]]
    if name:
        lines.append(f"Name: {one_line(name, 200)}.")
    lines.append("If this was not you, tell your administrator at once.")
    return notify(ALWAYS_ON, [user.id], agency=None, actor=actor, subject="Your account: " + ACCOUNT_EVENTS[event],
                  lines=lines, link=path_for("auth.account"))


def _long_date(day):
    return f"{day:%B} {day.day}, {day.year}"
