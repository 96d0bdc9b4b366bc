"""Page-or-fragment rendering and htmx-aware redirects."""
from flask import redirect, render_template
from flask_htmx.responses import HTMXResponseClientRedirect

from tracker.extensions import htmx


def wants_fragment():
    """True for targeted htmx requests; boosted navigation still gets whole pages."""
    return bool(htmx) and not htmx.boosted


def render(page, fragment, **context):
    return render_template(fragment if wants_fragment() else page, **context)


def redirect_to(location):
    """303 for plain forms; HX-Redirect for htmx so a whole page is never swapped into a fragment."""
    if wants_fragment():
        return HTMXResponseClientRedirect(location)
    return redirect(location, code=303)
