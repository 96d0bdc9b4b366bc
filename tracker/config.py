"""Configuration read from the environment.

Every setting has a safe production default; `TRACKER_ENV=development` relaxes only what a plain-HTTP
loopback server needs. `make run` also writes `instance/tracker-env` (one word, `development`) so that
later commands typed without `TRACKER_ENV` (`flask --app wsgi users list`, ...) know this checkout is a
development installation; the environment variable, when set, always wins.
"""
import os
import secrets
from datetime import timedelta
from pathlib import Path

ENVIRONMENTS = ("production", "development", "testing")
ENV_FILE = "tracker-env"


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


def _list(name, default):
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def environment(instance_path):
    """TRACKER_ENV if set, else what `make run` left in instance/tracker-env, else production."""
    value = os.environ.get("TRACKER_ENV")
    source = "TRACKER_ENV"
    if value is None:
        env_file = Path(instance_path) / ENV_FILE
        if not env_file.is_file():
            return "production"
        value, source = env_file.read_text(encoding="utf-8"), str(env_file)
    env = value.strip().lower()
    if env not in ENVIRONMENTS:
        raise ConfigError(f"{source} must be production, development or testing, got {env!r}")
    return env


def database_url():
    """DATABASE_URL with the scheme SQLAlchemy needs for psycopg 3 (Heroku-style URLs say postgres://)."""
    url = os.environ.get("DATABASE_URL")
    for prefix in ("postgres://", "postgresql://"):
        if url and url.startswith(prefix):
            return "postgresql+psycopg://" + url.removeprefix(prefix)
    return url


def _storage_settings(instance):
    return {
        "SQLALCHEMY_DATABASE_URI": database_url() or f"sqlite:///{instance / 'tracker.db'}",
        "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True},
        "EVIDENCE_DIR": os.environ.get("EVIDENCE_DIR") or str(instance / "evidence"),
        # s3://bucket/prefix puts evidence in S3-compatible object storage (several app hosts share it);
        # credentials come from boto3's usual variables (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY).
        "EVIDENCE_STORE": os.environ.get("EVIDENCE_STORE") or "",
        "S3_ENDPOINT_URL": os.environ.get("S3_ENDPOINT_URL") or None,
        "S3_REGION": os.environ.get("S3_REGION") or None,
        "MAX_CONTENT_LENGTH": _int("MAX_UPLOAD_MB", 25) * 1024 * 1024,
        "MAX_FORM_PARTS": 100,
        "SEED_DIR": os.environ.get("SEED_DIR") or str(Path(__file__).resolve().parent.parent / "seed"),
    }


def _session_settings(development):
    secure_cookies = _bool("SESSION_COOKIE_SECURE", not development)
    return {
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
        "HSTS": _bool("HSTS", not development),
    }


def _sign_in_settings(development):
    lockout_mode = os.environ.get("LOCKOUT_MODE", "admin")
    if lockout_mode not in {"admin", "timed"}:
        raise ConfigError(f"LOCKOUT_MODE must be admin or timed, got {lockout_mode!r}")
    return {
        "RATELIMIT_STORAGE_URI": os.environ.get("RATELIMIT_STORAGE_URI", "memory://"),
        "RATELIMIT_HEADERS_ENABLED": True,
        "RATELIMIT_ENABLED": _bool("RATELIMIT_ENABLED", True),
        "LOGIN_RATE_LIMIT": os.environ.get("LOGIN_RATE_LIMIT", "20 per minute"),
        "LOCKOUT_THRESHOLD": _int("LOCKOUT_THRESHOLD", 5),
        "LOCKOUT_WINDOW_MINUTES": _int("LOCKOUT_WINDOW_MINUTES", 15),
        # "admin": a locked account stays locked until an admin releases it (CJIS AC-7).
        # "timed": it unlocks by itself after LOCKOUT_WINDOW_MINUTES.
        "LOCKOUT_MODE": lockout_mode,
        "PASSWORD_MIN_LENGTH": _int("PASSWORD_MIN_LENGTH", 12),
        # Roles that must sign in with a TOTP code as well as the password (ASVS 6.3.3, CJIS IA-2).
        "MFA_REQUIRED_ROLES": _list("MFA_REQUIRED_ROLES", "" if development else "admin,monitor"),
        "ARGON2_TIME_COST": _int("ARGON2_TIME_COST", 3),
        "ARGON2_MEMORY_KIB": _int("ARGON2_MEMORY_KIB", 65536),
        "ARGON2_PARALLELISM": _int("ARGON2_PARALLELISM", 4),
    }


def _audit_settings(instance):
    """Signed checkpoints of the audit chain (tracker/services/checkpoints.py, tracker/signing.py)."""
    return {
        "AUDIT_CHECKPOINTS": _bool("AUDIT_CHECKPOINTS", True),
        "AUDIT_SIGNING_KEY": os.environ.get("AUDIT_SIGNING_KEY") or None,
        "AUDIT_SIGNING_KEY_FILE": os.environ.get("AUDIT_SIGNING_KEY_FILE") or str(instance / "audit-signing.key"),
        # A copy of every checkpoint as a JSON file: put it on storage the database's users cannot write.
        "AUDIT_CHECKPOINT_DIR": os.environ.get("AUDIT_CHECKPOINT_DIR") or str(instance / "audit-checkpoints"),
        # Public keys (base64) of earlier signing keys, so checkpoints signed before a key change still verify.
        "AUDIT_PUBLIC_KEYS": _list("AUDIT_PUBLIC_KEYS", ""),
        "AUDIT_CHECKPOINT_MINUTES": _int("AUDIT_CHECKPOINT_MINUTES", 60),
    }


def _deployment_settings():
    return {
        "TRUSTED_HOSTS": _list("TRUSTED_HOSTS", "") or None,
        "PROXY_COUNT": _int("PROXY_COUNT", 0),
        "SECURITY_LOG_FILE": os.environ.get("SECURITY_LOG_FILE") or None,
        # Rendered fragments of the board, dashboard, queue and roll-up, per worker (tracker/cache.py).
        # 0 entries turns the cache off.
        "PAGE_CACHE_ENTRIES": _int("PAGE_CACHE_ENTRIES", 4096),
        "PAGE_CACHE_MB": _int("PAGE_CACHE_MB", 64),
        "PAGE_CACHE_SECONDS": _int("PAGE_CACHE_SECONDS", 300),
        # A second level shared by every worker and host (redis://...): a fragment rendered by one worker
        # after a change is fetched by the others instead of rendered again. Empty: per worker only.
        "PAGE_CACHE_REDIS_URL": os.environ.get("PAGE_CACHE_REDIS_URL", ""),
    }


def _mail_settings(instance):
    """E-mail (tracker/mailer.py). Without SMTP_HOST, development and tests write .eml files to MAIL_DIR."""
    return {
        "SMTP_HOST": os.environ.get("SMTP_HOST") or "",
        "SMTP_PORT": _int("SMTP_PORT", 587),
        "SMTP_USER": os.environ.get("SMTP_USER") or "",
        "SMTP_PASSWORD": os.environ.get("SMTP_PASSWORD") or "",
        "SMTP_STARTTLS": _bool("SMTP_STARTTLS", True),
        "SMTP_SSL": _bool("SMTP_SSL", False),
        "SMTP_TIMEOUT": _int("SMTP_TIMEOUT", 30),
        "MAIL_FROM": os.environ.get("MAIL_FROM") or "Decree tracker <tracker@localhost>",
        # Links in messages start with this; without it a request's own address is used, or the
        # development server's.
        "MAIL_BASE_URL": os.environ.get("MAIL_BASE_URL") or "",
        "MAIL_DIR": os.environ.get("MAIL_DIR") or str(instance / "mail"),
        "MAIL_MAX_ATTEMPTS": _int("MAIL_MAX_ATTEMPTS", 8),
        "MAIL_RETRY_SECONDS": _int("MAIL_RETRY_SECONDS", 60),
        "MAIL_DIGEST_HOUR": _int("MAIL_DIGEST_HOUR", 6),
        "MAIL_POLL_SECONDS": _int("MAIL_POLL_SECONDS", 10),
    }


def from_env(instance_path):
    """Build the config mapping from environment variables (and instance/tracker-env)."""
    env = environment(instance_path)
    development = env == "development"
    return {
        "TRACKER_ENV": env,
        "SECRET_KEY": os.environ.get("SECRET_KEY") or None,
        **_storage_settings(Path(instance_path)),
        **_session_settings(development),
        **_sign_in_settings(development),
        **_audit_settings(Path(instance_path)),
        **_deployment_settings(),
        **_mail_settings(Path(instance_path)),
    }


def ensure_secret_key(config, instance_path):
    """Production refuses to start without SECRET_KEY; development keeps a random one on disk."""
    if config.get("SECRET_KEY"):
        return
    if config.get("TRACKER_ENV") == "production":
        raise ConfigError(
            "SECRET_KEY is not set. Set the SECRET_KEY environment variable to a long random value "
            "(for example: python -c 'import secrets; print(secrets.token_hex(32))'), "
            "or, for a local development copy, run `make run` once (it writes instance/tracker-env)."
        )
    key_file = Path(instance_path) / "secret_key"
    if not key_file.exists():
        key_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
    config["SECRET_KEY"] = key_file.read_text().strip()
