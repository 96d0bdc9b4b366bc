"""Monitor review of evidence: the queue, accept, return with a comment; waiting counts for the nav."""
from datetime import timedelta

import sqlalchemy as sa

from tracker import cache
from tracker.extensions import db
from tracker.models import Agency, Evidence, EvidenceReview, Membership, Module, Requirement, utcnow
from tracker.services import audit, notifications
from tracker.services.errors import ValidationFailed

AGE_FILTERS = {"7": "Waiting more than 7 days", "30": "Waiting more than 30 days"}


def monitor_agency_ids(user):
    if user.is_admin:
        return list(db.session.execute(sa.select(Agency.id)).scalars())
    return list(db.session.execute(
        sa.select(Membership.agency_id).where(Membership.user_id == user.id, Membership.role == "monitor")
    ).scalars())


def queue_query(agency_ids):
    """Current, submitted evidence of the given agencies, oldest first."""
    return (sa.select(Evidence, Requirement, Agency)
            .join(Requirement, Requirement.id == Evidence.requirement_id)
            .join(Agency, Agency.id == Requirement.agency_id)
            .where(Requirement.agency_id.in_(agency_ids), Evidence.review_state == "submitted",
                   Evidence.superseded.is_(False))
            .order_by(Evidence.created_at, Evidence.id))


PAGE_SIZE = 50


def queue(user, agency_slug="", module_key="", age="", page=1, agency_ids=None):
    """(rows of the page, total matching, counts per agency). Oldest first, PAGE_SIZE per page."""
    if agency_ids is None:
        agency_ids = monitor_agency_ids(user)
    query = queue_query(agency_ids)
    if agency_slug:
        query = query.where(Agency.slug == agency_slug)
    if module_key:
        query = query.join(Module, Module.id == Requirement.module_id).where(Module.key == module_key)
    if age in AGE_FILTERS:
        query = query.where(Evidence.created_at < utcnow() - timedelta(days=int(age)))
    total = db.session.execute(sa.select(sa.func.count()).select_from(query.order_by(None).subquery())).scalar()
    rows = db.session.execute(query.options(sa.orm.joinedload(Evidence.uploaded_by))
                              .limit(PAGE_SIZE).offset((max(page, 1) - 1) * PAGE_SIZE)).all()
    return rows, total, _counts_by_agency(agency_ids)


def _counts_by_agency(agency_ids):
    return dict(db.session.execute(
        sa.select(Requirement.agency_id, sa.func.count(Evidence.id))
        .join(Requirement, Requirement.id == Evidence.requirement_id)
        .where(Requirement.agency_id.in_(agency_ids), Evidence.review_state == "submitted",
               Evidence.superseded.is_(False))
        .group_by(Requirement.agency_id)
    ).all())


def _review_waiting(agency_ids):
    """Evidence waiting for review in these agencies (None: all). With the page cache on, each agency's count is
    kept under that agency's version, so after a change the navigation recounts one agency, not all of them."""
    if not cache.enabled():
        return _waiting_total() if agency_ids is None else sum(_counts_by_agency(agency_ids).values())
    if agency_ids is None:
        agency_ids = cache.value("agency-ids", (), lambda: tuple(db.session.execute(sa.select(Agency.id)).scalars()))
    return sum(cache.per_agency("review-waiting", agency_ids, _counts_with_zeros).values())


def _counts_with_zeros(agency_ids):
    found = _counts_by_agency(agency_ids)
    return {agency_id: found.get(agency_id, 0) for agency_id in agency_ids}


# The navigation's count stops here and shows "999+": counting every waiting item in every agency cost an
# administrator's page a scan of the evidence table (12 ms on PostgreSQL at 25,000 waiting items); the queue
# itself gives the exact figure.
NAV_CAP = 999
_WAITING_CAPPED = sa.select(sa.func.count()).select_from(
    sa.select(Evidence.id).where(Evidence.review_state == "submitted", Evidence.superseded.is_(False))
    .limit(sa.bindparam("cap")).subquery())


def _waiting_total():
    """Submitted, current evidence in every agency (an admin's count), at most NAV_CAP + 1."""
    return db.session.execute(_WAITING_CAPPED, {"cap": NAV_CAP + 1}).scalar()


def _decide(evidence, decision, comment, actor):
    if evidence.superseded:
        raise ValidationFailed({"decision": "A newer version of this evidence exists; review that one."})
    if evidence.review_state != "submitted":
        raise ValidationFailed({"decision": f"This evidence was already {evidence.review_state}."})
    # Conditional update: of two monitors deciding at once, exactly one changes the row.
    changed = db.session.execute(
        sa.update(Evidence).where(Evidence.id == evidence.id, Evidence.review_state == "submitted",
                                  Evidence.superseded.is_(False))
        .values(review_state=decision).execution_options(synchronize_session=False)
    ).rowcount
    if changed != 1:  # nothing was written, so there is nothing to undo
        raise ValidationFailed({"decision": "Someone decided on this evidence a moment ago; reload to see it."})
    evidence.review_state = decision
    review = EvidenceReview(evidence_id=evidence.id, reviewer_id=actor.id, decision=decision, comment=comment)
    db.session.add(review)
    db.session.flush()
    requirement = db.session.get(Requirement, evidence.requirement_id)
    audit.record(f"evidence.{'accept' if decision == 'accepted' else 'return'}", evidence,
                 agency_id=requirement.agency_id, actor=actor, before={"review_state": "submitted"},
                 after={"review_state": decision, "comment": comment})
    return review


def accept(evidence, comment, *, actor):
    comment = (comment or "").strip()
    if len(comment) > 4000:
        raise ValidationFailed({"comment": "The comment must be at most 4000 characters."})
    return _decide(evidence, "accepted", comment, actor)


def return_(evidence, comment, *, actor):
    comment = (comment or "").strip()
    if not comment:
        raise ValidationFailed({"comment": "Say what is missing or wrong: a comment is required to return evidence."})
    if len(comment) > 4000:
        raise ValidationFailed({"comment": "The comment must be at most 4000 characters."})
    review = _decide(evidence, "returned", comment, actor)
    notifications.evidence_returned(evidence, db.session.get(Requirement, evidence.requirement_id), actor=actor)
    return review


def returned_for(user):
    """Returned, current evidence in the user's officer agencies that they uploaded or whose requirement they own."""
    officer_agencies = sa.select(Membership.agency_id).where(Membership.user_id == user.id,
                                                             Membership.role == "officer")
    return (sa.select(Evidence, Requirement, Agency)
            .join(Requirement, Requirement.id == Evidence.requirement_id)
            .join(Agency, Agency.id == Requirement.agency_id)
            .where(Requirement.agency_id.in_(officer_agencies), Evidence.review_state == "returned",
                   Evidence.superseded.is_(False),
                   sa.or_(Evidence.uploaded_by_id == user.id, Requirement.owner_id == user.id))
            .order_by(Evidence.created_at))


def waiting_counts(user, memberships):
    """{'review': n, 'returned': n} for the navigation, from the user's memberships (already loaded): at most
    two small counting queries, none for a count the user's roles cannot have."""
    if user.is_admin:
        review = _review_waiting(None)
    else:
        monitor_ids = [m.agency_id for m in memberships if m.role == "monitor"]
        review = _review_waiting(monitor_ids) if monitor_ids else 0
    returned = 0
    if any(m.role == "officer" for m in memberships):
        returned = db.session.execute(sa.select(sa.func.count()).select_from(returned_for(user).subquery())).scalar()
    return {"review": review, "returned": returned}
