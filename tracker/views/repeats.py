"""The answer to a form sent again (double click, retry, Back and resend): a redirect to the first result."""
from flask import flash, redirect

from tracker.services import submissions


def repeat_response(user):
    """A redirect to the first result when this request repeats a form already sent; otherwise None."""
    url = submissions.earlier_result(user)
    if url is None:
        return None
    flash("That form had already been sent and was saved once; nothing was added twice.", "info")
    return redirect(url, code=303)
