"""Configuration read from the environment.

Every setting has a safe production default; `TRACKER_ENV=development` (used by `make run`)
relaxes only what a plain-HTTP loopback server needs.
"""
import os
import secrets
from datetime import timedelta
from pathlib import Path


class ConfigError(RuntimeError):
    """Start-up configuration is missing or wrong."""


def _bool(name, default):
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _int(name, default):
    value = os.environ.get(name)
    if value is None or not value.strip():
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a whole number, got {value!r}") from exc


def from_env(instance_path):
    """Build the config mapping from environment variables."""
    env = os.environ.get("TRACKER_ENV", "production").strip().lower()
    if env not in {"production", "development", "testing"}:
        raise ConfigError(f"TRACKER_ENV must be production, development or testing, got {env!r}")
    development = env == "development"
    instance = Path(instance_path)

    database_url = os.environ.get("DATABASE_URL") or f"sqlite:///{instance / 'tracker.db'}"
    if database_url.startswith("postgres://"):
        database_url = "postgresql+psycopg://" + database_url.removeprefix("postgres://")
    elif database_url.startswith("postgresql://"):
        database_url = "postgresql+psycopg://" + database_url.removeprefix("postgresql://")

    secure_cookies = _bool("SESSION_COOKIE_SECURE", not development)
    config = {
        "TRACKER_ENV": env,
        "SECRET_KEY": os.environ.get("SECRET_KEY") or None,
        "SQLALCHEMY_DATABASE_URI": database_url,
        "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True},
        "EVIDENCE_DIR": os.environ.get("EVIDENCE_DIR") or str(instance / "evidence"),
        "MAX_CONTENT_LENGTH": _int("MAX_UPLOAD_MB", 25) * 1024 * 1024,
        "MAX_FORM_PARTS": 100,
        # Cookies: __Host- prefix needs Secure, so plain-HTTP development uses a plain name.
        "SESSION_COOKIE_NAME": "__Host-session" if secure_cookies else "tracker_session",
        "SESSION_COOKIE_SECURE": secure_cookies,
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_PATH": "/",
        "PERMANENT_SESSION_LIFETIME": timedelta(hours=12),
        "SESSION_IDLE_MINUTES": _int("SESSION_IDLE_MINUTES", 30),
        "SESSION_MAX_HOURS": _int("SESSION_MAX_HOURS", 12),
        # CSRF tokens live as long as the server-side session instead of expiring after 1 h.
        "WTF_CSRF_TIME_LIMIT": None,
        "RATELIMIT_STORAGE_URI": os.environ.get("RATELIMIT_STORAGE_URI", "memory://"),
        "RATELIMIT_HEADERS_ENABLED": True,
        "RATELIMIT_ENABLED": _bool("RATELIMIT_ENABLED", True),
        "LOGIN_RATE_LIMIT": os.environ.get("LOGIN_RATE_LIMIT", "20 per minute"),
        "LOCKOUT_THRESHOLD": _int("LOCKOUT_THRESHOLD", 5),
        "LOCKOUT_WINDOW_MINUTES": _int("LOCKOUT_WINDOW_MINUTES", 15),
        # "admin": a locked account stays locked until an admin releases it (CJIS AC-7).
        # "timed": it unlocks by itself after LOCKOUT_WINDOW_MINUTES.
        "LOCKOUT_MODE": os.environ.get("LOCKOUT_MODE", "admin"),
        "PASSWORD_MIN_LENGTH": _int("PASSWORD_MIN_LENGTH", 12),
        # Roles that must sign in with a TOTP code as well as the password (ASVS 6.3.3, CJIS IA-2).
        "MFA_REQUIRED_ROLES": [r.strip() for r in os.environ.get(
            "MFA_REQUIRED_ROLES", "" if development else "admin,monitor").split(",") if r.strip()],
        "ARGON2_TIME_COST": _int("ARGON2_TIME_COST", 3),
        "ARGON2_MEMORY_KIB": _int("ARGON2_MEMORY_KIB", 65536),
        "ARGON2_PARALLELISM": _int("ARGON2_PARALLELISM", 4),
        "TRUSTED_HOSTS": [h.strip() for h in os.environ.get("TRUSTED_HOSTS", "").split(",") if h.strip()]
        or None,
        "PROXY_COUNT": _int("PROXY_COUNT", 0),
        "HSTS": _bool("HSTS", not development),
        "SECURITY_LOG_FILE": os.environ.get("SECURITY_LOG_FILE") or None,
        # Rendered fragments of the board, dashboard, queue and roll-up, per worker (tracker/cache.py).
        # 0 entries turns the cache off.
        "PAGE_CACHE_ENTRIES": _int("PAGE_CACHE_ENTRIES", 256),
        "PAGE_CACHE_SECONDS": _int("PAGE_CACHE_SECONDS", 300),
        "SEED_DIR": os.environ.get("SEED_DIR") or str(Path(__file__).resolve().parent.parent / "seed"),
    }
    if config["LOCKOUT_MODE"] not in {"admin", "timed"}:
        raise ConfigError(f"LOCKOUT_MODE must be admin or timed, got {config['LOCKOUT_MODE']!r}")
    return config


def ensure_secret_key(config, instance_path):
    """Production refuses to start without SECRET_KEY; development keeps a random one on disk."""
    if config.get("SECRET_KEY"):
        return
    if config.get("TRACKER_ENV") == "production":
        raise ConfigError(
            "SECRET_KEY is not set. Set the SECRET_KEY environment variable to a long random value "
            "(for example: python -c 'import secrets; print(secrets.token_hex(32))'), "
            "or set TRACKER_ENV=development for a local installation."
        )
    key_file = Path(instance_path) / "secret_key"
    if not key_file.exists():
        key_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
    config["SECRET_KEY"] = key_file.read_text().strip()
