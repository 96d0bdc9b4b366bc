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


def append_oob_flash(response):
    """Add pending flash messages to htmx fragment answers as an out-of-band swap of #flash."""
    from flask import session

    if not wants_fragment() or response.status_code in (204, 301, 302, 303) or response.direct_passthrough:
        return response
    if response.mimetype != "text/html" or not session.get("_flashes"):
        return response
    response.set_data(response.get_data(as_text=True) + render_template("_flash.html", oob=True))
    return response
