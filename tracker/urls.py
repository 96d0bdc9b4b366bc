"""Addresses taken from the request."""
from urllib.parse import urlsplit


def safe_next(target, default=None):
    """`target` when it is a path on this site, else `default`: a `next` never leads to another
    host (open redirect)."""
    if not target:
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    return target
