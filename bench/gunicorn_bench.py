"""gunicorn settings for `make bench`: each worker keeps a file with its fragment-cache hits and misses
(rewritten at most twice a second and when it exits), so the benchmark can read the hit rate of a phase."""
import json
import os
import threading
import time
from pathlib import Path

_last = [0.0]


def _write_stats():
    target = os.environ.get("BENCH_CACHE_STATS")
    if not target:
        return
    from wsgi import app

    cache = app.extensions["fragment_cache"]
    path = Path(target, f"{os.getpid()}.json")
    temporary = path.with_name(f"{os.getpid()}.{threading.get_ident()}.tmp")
    temporary.write_text(json.dumps({"hits": cache.hits, "misses": cache.misses,
                                       "missed": dict(cache.missed), "shared_hits": cache.shared_hits}))
    temporary.replace(path)


def post_request(worker, req, environ, resp):
    if time.monotonic() - _last[0] > 0.5:
        _last[0] = time.monotonic()
        _write_stats()


def worker_exit(server, worker):
    _write_stats()
