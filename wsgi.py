"""Entry point for gunicorn (`gunicorn wsgi:app`) and `flask --app wsgi`."""
import sys

from tracker import create_app
from tracker.config import ConfigError

try:
    app = create_app()
except ConfigError as exc:
    print(f"Configuration error: {exc}", file=sys.stderr)
    raise SystemExit(1) from None
