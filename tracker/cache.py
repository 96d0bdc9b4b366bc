"""Rendered fragments of the read-heavy pages, kept per worker and keyed on the data version.

Every state change writes an audit event in its own transaction (the audit chain serialises them),
so the newest audit event id names the state of the data. A fragment is stored under that id, the
date (overdue flags, waiting days) and the parts of the request it depends on; after any change the
next request reads a new id and renders afresh, so a change is visible at once on every worker.
Entries also expire after PAGE_CACHE_SECONDS, which bounds what a write made outside the app
(an operator's SQL, a restored backup) can leave on screen.

Only GET and HEAD requests use the cache: a request that writes renders from its own transaction.
"""
import threading
import time
from collections import OrderedDict

import sqlalchemy as sa
from flask import current_app, g, request
from markupsafe import Markup

from tracker.extensions import db
from tracker.models import AuditEvent
from tracker.models.base import utcnow

MISSING = object()


class FragmentCache:
    """A bounded least-recently-used map with expiry; one per app per process."""

    def __init__(self, max_entries, seconds):
        self.max_entries = max_entries
        self.seconds = seconds
        self._entries = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key):
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry[0] < time.monotonic():
                self.misses += 1
                return MISSING
            self._entries.move_to_end(key)
            self.hits += 1
            return entry[1]

    def put(self, key, value):
        with self._lock:
            self._entries[key] = (time.monotonic() + self.seconds, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def clear(self):
        with self._lock:
            self._entries.clear()


def init_app(app):
    app.extensions["fragment_cache"] = FragmentCache(app.config["PAGE_CACHE_ENTRIES"],
                                                     app.config["PAGE_CACHE_SECONDS"])


def store():
    return current_app.extensions["fragment_cache"]


def data_version():
    """The newest audit event id, read once per request."""
    if "data_version" not in g:
        g.data_version = db.session.execute(sa.select(sa.func.max(AuditEvent.id))).scalar() or 0
    return g.data_version


def _usable():
    return current_app.config["PAGE_CACHE_ENTRIES"] > 0 and request.method in ("GET", "HEAD")


def _full_key(name, key):
    # The version is read before computing, so what is stored is never older than its key.
    return (name, data_version(), utcnow().date(), key)


def value(name, key, compute):
    """compute() once per data version, date and key; compute must return something immutable."""
    if not _usable():
        return compute()
    full_key = _full_key(name, key)
    cache = store()
    found = cache.get(full_key)
    if found is MISSING:
        found = compute()
        cache.put(full_key, found)
    return found


def html(name, key, render):
    """A rendered fragment as Markup; render() returns HTML from an autoescaping template."""
    return Markup(value(name, key, lambda: str(render())))  # noqa: S704 - already escaped by Jinja


def streamed(name, key, produce, limit=2 * 1024 * 1024):
    """Yield the text chunks of produce(); when the whole is at most `limit` characters, keep it so
    the next request for the same version is one chunk. Larger outputs stream in constant memory."""
    if not _usable():
        yield from produce()
        return
    full_key = _full_key(name, key)
    cache = store()
    found = cache.get(full_key)
    if found is not MISSING:
        yield found
        return
    parts, size = [], 0
    for chunk in produce():
        if parts is not None:
            parts.append(chunk)
            size += len(chunk)
            if size > limit:
                parts = None
        yield chunk
    if parts is not None:
        cache.put(full_key, "".join(parts))
