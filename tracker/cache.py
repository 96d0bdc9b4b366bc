"""Rendered fragments of the read-heavy pages, kept per worker and keyed on the data version.

Every state change writes an audit event in its own transaction (the audit chain serialises them),
so the newest audit event names the state of the data. A page about one agency (or a few) is keyed
on those agencies' newest event plus the newest event that belongs to no agency (catalog, accounts;
sign-in events excluded), so a write in one agency leaves every other agency's pages cached; a page
about all agencies is keyed on the newest change of all. The versions come from a per-process VersionLog
that reads only the events added since the previous request. A fragment is stored under that version, the
date (overdue flags, waiting days) and the parts of the request it depends on; after a change the
next request reads a new version and renders afresh, so a change is visible at once on every worker.
Entries also expire after PAGE_CACHE_SECONDS, which bounds what a write made outside the app
(an operator's SQL, a restored backup) can leave on screen.

Only GET and HEAD requests use the cache: a request that writes renders from its own transaction.
"""
import threading
import time
from collections import Counter, OrderedDict

import sqlalchemy as sa
from flask import current_app, g, has_request_context, request
from markupsafe import Markup

from tracker.extensions import db
from tracker.models import Agency, AuditEvent
from tracker.models.base import utcnow
from tracker.shared_cache import SharedStore

MISSING = object()


class FragmentCache:
    """A bounded least-recently-used map with expiry; one per app per process. Bounded by entries and by the
    characters it holds, so 200 agencies' boards (~100 KB each) fit while memory stays capped."""

    def __init__(self, max_entries, seconds, max_chars=None):
        self.max_entries = max_entries
        self.max_chars = max_chars
        self.seconds = seconds
        self._entries = OrderedDict()
        self._chars = 0
        self._lock = threading.Lock()
        self._flights = {}  # key -> the lock held by the thread computing it
        self.hits = 0
        self.misses = 0
        self.shared_hits = 0  # first-level misses found in the shared second level
        self.missed = Counter()  # misses by fragment name: what `make bench` reports beside the hit rate

    def get(self, key):
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry[0] < time.monotonic():
                self.misses += 1
                self.missed[key[0] if isinstance(key, tuple) else key] += 1
                return MISSING
            self._entries.move_to_end(key)
            self.hits += 1
            return entry[1]

    def get_or_compute(self, key, compute, shared=None):
        """The value under `key`, computed once however many threads of this process miss it at the same moment:
        after a write, every thread asking for the navigation would otherwise render it in parallel.
        `shared`: (SharedStore, namespace) to look in before computing, and to store into after."""
        found = self.get(key)
        if found is not MISSING:
            return found
        with self._lock:
            flight = self._flights.setdefault(key, threading.Lock())
        # A timeout rather than waiting forever: a computation that itself waits on another key cannot deadlock.
        acquired = flight.acquire(timeout=10)
        try:
            with self._lock:
                entry = self._entries.get(key)
                found = entry[1] if entry is not None and entry[0] >= time.monotonic() else MISSING
            if found is MISSING and shared is not None:
                value, present = shared[0].get(shared[1], key)
                if present:
                    self.shared_hits += 1
                    found = value
                    self.put(key, found)
            if found is MISSING:
                found = compute()
                self.put(key, found)
                if shared is not None:
                    shared[0].put(shared[1], key, found)
            return found
        finally:
            if acquired:
                flight.release()
            with self._lock:
                if self._flights.get(key) is flight and not flight.locked():
                    del self._flights[key]

    def put(self, key, value):
        size = _size(value)
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._chars -= old[2]
            self._entries[key] = (time.monotonic() + self.seconds, value, size)
            self._chars += size
            while self._entries and (len(self._entries) > self.max_entries
                                     or (self.max_chars is not None and self._chars > self.max_chars)):
                self._chars -= self._entries.popitem(last=False)[1][2]

    def clear(self):
        with self._lock:
            self._entries.clear()
            self._chars = 0


def _size(value):
    """Characters held by a cached value (rendered HTML dominates; anything else counts a little)."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, tuple | list):
        return sum(_size(v) for v in value)
    if isinstance(value, dict):
        return sum(_size(v) for v in value.values())
    return 64


def init_app(app):
    app.extensions["fragment_cache"] = FragmentCache(app.config["PAGE_CACHE_ENTRIES"],
                                                     app.config["PAGE_CACHE_SECONDS"],
                                                     app.config["PAGE_CACHE_MB"] * 1024 * 1024)
    app.extensions["version_log"] = VersionLog()
    url = app.config["PAGE_CACHE_REDIS_URL"]
    app.extensions["shared_cache"] = SharedStore(url, app.config["PAGE_CACHE_SECONDS"]) if url else None
    # Board rows, keyed by everything in their markup (views/board.py): after one requirement changes, its
    # board renders one row and reuses the others. 200 agencies x 120 rows (~1 KB each) fit in the default.
    app.extensions["row_cache"] = FragmentCache(max(8 * app.config["PAGE_CACHE_ENTRIES"], 0),
                                                app.config["PAGE_CACHE_SECONDS"],
                                                app.config["PAGE_CACHE_MB"] * 1024 * 1024 // 2)


def store():
    return current_app.extensions["fragment_cache"]


def rows():
    """The row cache, or None when the page cache is off or the request writes (see _usable)."""
    return current_app.extensions["row_cache"] if _usable() else None


# Beyond this many agencies one "newest event of all" is cheaper than one index step per agency.
WIDE_SCOPE = 50
ALL = None


def data_version(agencies=ALL):
    """The data version a page about `agencies` (an id, ids, or ALL) depends on; read once per request."""
    scope = _scope(agencies)
    versions = g.setdefault("data_versions", {})
    if scope not in versions:
        log = _synced_log()
        versions[scope] = log.all_version() if scope is ALL else log.scope_version(scope, db.session)
    return versions[scope]


def _scope(agencies):
    if agencies is ALL:
        return ALL
    if isinstance(agencies, int):
        return (agencies,)
    scope = tuple(sorted(set(agencies)))
    return ALL if len(scope) > WIDE_SCOPE else scope


def _synced_log():
    """This app's version log, brought up to date once per request (one primary-key step when nothing changed)."""
    log = current_app.extensions["version_log"]
    if "versions_synced" not in g:
        log.sync(db.session)
        g.versions_synced = True
    return log


# Every request runs it: built once, run with parameters.
_SINCE = (sa.select(AuditEvent.id, AuditEvent.hash, AuditEvent.agency_id, AuditEvent.outcome, AuditEvent.action)
          .where(AuditEvent.id >= sa.bindparam("since")).order_by(AuditEvent.id).limit(sa.bindparam("limit")))


class VersionLog:
    """Per app and process: the newest audit event of each agency (for the agencies asked about so far), the
    newest change that belongs to no agency, and the newest change of all. Each request reads only the events
    added since the previous one and folds them in, so a page's version costs one query that returns one row
    when nothing changed, whether the page is about one agency or two hundred.

    Audit events are numbered in commit order (the chain takes a lock until commit, tracker/services/audit.py),
    so "every event after the last one seen" misses nothing. The last event seen is remembered with its hash:
    a log that was restored or rewritten under the same numbers is noticed, and the log starts afresh."""

    CATCH_UP = 500  # more new events than this: start afresh, it is cheaper than folding them in

    def __init__(self):
        self._lock = threading.Lock()
        self.position = None  # (id, hash) of the newest event folded in; (0, None) for an empty log
        self.own = {}
        self.shared = 0
        self.newest_change = 0
        self.genesis = None  # the first event's hash: this database's identity in the shared cache

    def sync(self, session):
        position = self.position
        if position is not None:
            rows = session.execute(_SINCE, {"since": position[0], "limit": self.CATCH_UP + 1}).all()
            if position[0] and not (rows and (rows[0].id, rows[0].hash) == position):
                rows = None  # the event last seen is gone or different: a restored or rewritten log
            elif position[0]:
                rows = rows[1:]
            if rows is not None and len(rows) < self.CATCH_UP:
                self._fold(rows)
                return
        self._start(session)

    def _fold(self, rows):
        with self._lock:
            floor = self.position[0]
            if self.genesis is None and floor == 0 and rows:
                self.genesis = rows[0].hash  # the log was empty when it started
            for row in rows:
                if row.id <= floor:
                    continue  # another thread folded it in already
                if row.agency_id:
                    self.own[row.agency_id] = row.id
                    self.newest_change = row.id
                elif row.outcome == "success" and not row.action.startswith("auth."):
                    self.shared = self.newest_change = row.id
                self.position = (row.id, row.hash)

    def _start(self, session):
        newest = session.execute(sa.select(AuditEvent.id, AuditEvent.hash).order_by(AuditEvent.id.desc())
                                 .limit(1)).first()
        genesis = session.execute(sa.select(AuditEvent.hash).order_by(AuditEvent.id).limit(1)).scalar()
        shared, newest_own = session.execute(sa.select(_newest_shared(), sa.select(AuditEvent.id).where(
            AuditEvent.agency_id.is_not(None)).order_by(AuditEvent.id.desc()).limit(1).scalar_subquery())).one()
        with self._lock:
            self.own = {}
            self.shared = shared or 0
            self.newest_change = max(shared or 0, newest_own or 0)
            self.position = (newest.id, newest.hash) if newest else (0, None)
            self.genesis = genesis

    def all_version(self):
        with self._lock:
            return (self.newest_change, self.shared)

    def versions(self, agency_ids, session):
        """{agency id: (its newest event, the newest shared change)}; agencies not seen before cost one query."""
        with self._lock:
            unknown = [agency_id for agency_id in agency_ids if agency_id not in self.own]
        if unknown:
            read = dict(session.execute(sa.select(Agency.id, _newest_own()).where(Agency.id.in_(unknown))).all())
            with self._lock:
                for agency_id in unknown:
                    # max(): a newer event may have been folded in meanwhile by another thread
                    self.own[agency_id] = max(self.own.get(agency_id, 0), read.get(agency_id) or 0)
        with self._lock:
            return {agency_id: (self.own[agency_id], self.shared) for agency_id in agency_ids}

    def scope_version(self, scope, session):
        versions = self.versions(scope, session)
        return (max((own for own, _shared in versions.values()), default=0), self.shared)


# ORDER BY id DESC LIMIT 1 rather than max(): a backward walk of ix_audit_event_agency_id_id that stops at
# the first row passing the filters, on SQLite and PostgreSQL alike (max() with filters may read them all).
def _newest_own():
    """Each agency's newest event: one backward step in the index."""
    return (sa.select(AuditEvent.id).where(AuditEvent.agency_id == Agency.id)
            .order_by(AuditEvent.id.desc()).limit(1).correlate(Agency).scalar_subquery())


def _newest_shared():
    """The newest successful event that belongs to no agency, sign-ins aside (they change no page): one step
    in the partial index ix_audit_event_shared_changes, whose condition these filters repeat."""
    # Literal values, not bound parameters: a planner matches a partial index's condition only against literals.
    def literal(value):
        return sa.literal(value, literal_execute=True)
    return (sa.select(AuditEvent.id)
            .where(sa.func.coalesce(AuditEvent.agency_id, literal(0)) == literal(0),
                   AuditEvent.outcome == literal("success"), AuditEvent.action.not_like(literal("auth.%")))
            .order_by(AuditEvent.id.desc()).limit(1).correlate(None).scalar_subquery())


def agency_versions(agency_ids):
    """{agency id: that agency's version}: from the version log, agencies not seen before in one query."""
    return _synced_log().versions(list(agency_ids), db.session)


def per_agency(name, agency_ids, compute):
    """{agency id: value}, each kept under its own agency's version, so a write in one agency recomputes one
    value, not all of them. compute(ids) returns {id: value} for the ids not cached (immutable values)."""
    agency_ids = list(agency_ids)
    if not _usable() or not agency_ids:
        return compute(agency_ids) if agency_ids else {}
    versions, today, cache = agency_versions(agency_ids), utcnow().date(), store()
    found = {}
    for agency_id in agency_ids:
        value = cache.get((name, versions.get(agency_id), today, agency_id))
        if value is not MISSING:
            found[agency_id] = value
    missing = [agency_id for agency_id in agency_ids if agency_id not in found]
    if missing:
        for agency_id, value in compute(missing).items():
            cache.put((name, versions.get(agency_id), today, agency_id), value)
            found[agency_id] = value
    return found


def per_request(key, compute):
    """compute() once per GET request (pages call some helpers from several panels); requests that write, and
    code outside a request, compute every time, so nothing read before a change is reused after it."""
    if not has_request_context() or request.method not in ("GET", "HEAD"):
        return compute()
    memo = g.setdefault("per_request", {})
    if key not in memo:
        memo[key] = compute()
    return memo[key]


def enabled():
    """Whether this request may use the page cache (it is on, and the request only reads)."""
    return _usable()


def _usable():
    return current_app.config["PAGE_CACHE_ENTRIES"] > 0 and request.method in ("GET", "HEAD")


def _full_key(name, key, agencies):
    # The version is read before computing, so what is stored is never older than its key.
    return (name, data_version(agencies), utcnow().date(), key)


def value(name, key, compute, agencies=ALL, shared=False):
    """compute() once per data version of `agencies`, date and key; compute must return something immutable.
    shared=True: also through the second level shared by all workers (PAGE_CACHE_REDIS_URL), for values made
    of strings, numbers and None only (they come back with lists for tuples)."""
    if not _usable():
        return compute()
    full_key = _full_key(name, key, agencies)
    return store().get_or_compute(full_key, compute, _shared() if shared else None)


def _shared():
    second, genesis = current_app.extensions["shared_cache"], current_app.extensions["version_log"].genesis
    return (second, genesis) if second is not None and genesis else None


def html(name, key, render, agencies=ALL):
    """A rendered fragment as Markup; render() returns HTML from an autoescaping template."""
    return Markup(value(name, key, lambda: str(render()), agencies, shared=True))  # noqa: S704 - already escaped by Jinja


def streamed(name, key, produce, agencies=ALL, limit=2 * 1024 * 1024):
    """Yield the text chunks of produce(); when the whole is at most `limit` characters, keep it so
    the next request for the same version is one chunk. Larger outputs stream in constant memory."""
    if not _usable():
        yield from produce()
        return
    full_key = _full_key(name, key, agencies)
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
