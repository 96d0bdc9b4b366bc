"""One-time form ids: a form that creates something creates it once, however often it is sent.

Each rendering of such a form carries a fresh random id. The first sending that succeeds stores the
id with where its result can be seen, in the same transaction as the result; a repeat (double click,
network retry, Back and resend) finds the id and is pointed there instead of creating a duplicate.
Two repeats racing each other are settled by the primary key: the loser's transaction fails and it
is pointed at the winner's result. A form sent without an id (an older page, a script) is not deduplicated.
"""
import re
import secrets
from datetime import timedelta

import sqlalchemy as sa
from flask import request
from markupsafe import Markup

from tracker.extensions import db
from tracker.models import FormSubmission, utcnow
from tracker.services import audit

FIELD = "submission_id"
KEEP = timedelta(days=2)
_ID = re.compile(r"[0-9a-f]{32}")


def hidden_field():
    """The hidden input for a form template; a new id on every rendering."""
    return Markup(f'<input type="hidden" name="{FIELD}" value="{secrets.token_hex(16)}">')  # noqa: S704 - hex only


def _sent_id():
    value = request.form.get(FIELD, "")
    return value if _ID.fullmatch(value) else None


def earlier_result(user):
    """Where the first sending of this form led, when this request repeats it; otherwise None."""
    sent = _sent_id()
    if sent is None:
        return None
    return db.session.execute(sa.select(FormSubmission.result_url).where(
        FormSubmission.user_id == user.id, FormSubmission.id == sent)).scalar_one_or_none()


def remember(user, result_url):
    """Record this sending with its result, in the caller's transaction; forget ids older than KEEP."""
    sent = _sent_id()
    if sent is None:
        return
    now = utcnow()
    removed = db.session.execute(sa.delete(FormSubmission).where(FormSubmission.created_at < now - KEEP)).rowcount
    if removed:
        audit.record("form_submission.sweep", actor=user, object_type="form_submission",
                     after={"removed": removed, "older_than": now - KEEP})
    db.session.add(FormSubmission(user_id=user.id, id=sent, result_url=result_url, created_at=now))
