"""htmx helpers: fragment or page, and flash messages carried out of band on fragments."""
from flask import render_template

from tracker.extensions import htmx


def wants_fragment():
    """True for targeted htmx requests; boosted navigation still gets whole pages."""
    return bool(htmx) and not htmx.boosted




def append_oob_flash(response):
    """Add pending flash messages to htmx fragment answers as an out-of-band swap of #flash."""
    from flask import session

    if not wants_fragment() or response.status_code in (204, 301, 302, 303) or response.direct_passthrough:
        return response
    if response.mimetype != "text/html" or not session.get("_flashes"):
        return response
    response.set_data(response.get_data(as_text=True) + render_template("_flash.html", oob=True))
    return response
