"""The page cache's second level in Redis, shared by every worker and host (PAGE_CACHE_REDIS_URL).

Only plain values travel: strings, numbers, None and lists of them, as JSON (never pickle: whoever can
write to Redis must not be able to run code here). Keys carry the database's identity (the hash of its
first audit event), so two deployments sharing one Redis never see each other's pages, and the same data
version as the first level, so a fragment fetched here is exactly the one this worker would render.
Redis failing or slow is a miss, logged once a minute, never an error page.
"""
import hashlib
import json
import logging
import time

log = logging.getLogger(__name__)
PLAIN = (str, int, float, bool, type(None))


def plain(value):
    """Whether `value` survives a JSON round trip as something the page code reads the same way."""
    if type(value) in PLAIN:
        return True
    # Exactly list or tuple: a named tuple would come back as a list without its names.
    return type(value) in (list, tuple) and all(plain(v) for v in value)


class SharedStore:
    def __init__(self, url, seconds):
        import redis

        self.client = redis.Redis.from_url(url, socket_timeout=0.25, socket_connect_timeout=0.25)
        self.seconds = seconds
        self._quiet_until = 0.0

    def _name(self, namespace, key):
        text = json.dumps([namespace, key], default=str, separators=(",", ":"))
        return "tracker:page:" + hashlib.sha256(text.encode()).hexdigest()

    def get(self, namespace, key):
        try:
            data = self.client.get(self._name(namespace, key))
        except Exception as error:  # noqa: BLE001 - any Redis failure is a miss
            self._failed(error)
            return None, False
        if data is None:
            return None, False
        try:
            return json.loads(data), True
        except ValueError:
            return None, False

    def put(self, namespace, key, value):
        if not plain(value):
            return
        try:
            self.client.set(self._name(namespace, key), json.dumps(value, separators=(",", ":")), ex=self.seconds)
        except Exception as error:  # noqa: BLE001 - the first level still holds it
            self._failed(error)

    def _failed(self, error):
        if time.monotonic() >= self._quiet_until:
            self._quiet_until = time.monotonic() + 60
            log.warning("shared page cache unavailable (%s); pages are rendered per worker", error)
