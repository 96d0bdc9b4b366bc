"""Consent-decree recommendation tracker: the application factory."""
import logging
from pathlib import Path

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from tracker import input_guard
from tracker.config import ensure_secret_key, from_env
from tracker.signing import ensure_signing_key

ROOT = Path(__file__).resolve().parent.parent


def create_app(config=None):
    app = Flask(
        __name__,
        instance_path=str(ROOT / "instance"),
        instance_relative_config=False,
        template_folder=str(ROOT / "templates"),
    )
    _configure(app, config)
    _init_extensions(app)
    _register_handlers(app)
    _configure_logging(app)
    return app


def _configure(app, overrides):
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    app.config.from_mapping(from_env(app.instance_path))
    if overrides:
        app.config.from_mapping(overrides)
    ensure_secret_key(app.config, app.instance_path)
    ensure_signing_key(app.config)
    input_guard.init_app(app)  # the int converter must be in place before the blueprints
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        # A database file has no server connection to lose: pinging it is one more statement per request.
        options = app.config.get("SQLALCHEMY_ENGINE_OPTIONS") or {}
        app.config["SQLALCHEMY_ENGINE_OPTIONS"] = {k: v for k, v in options.items() if k != "pool_pre_ping"}
    if app.config["PROXY_COUNT"]:
        count = app.config["PROXY_COUNT"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=count, x_proto=count, x_host=count)


def _init_extensions(app):
    from tracker import db as _engine_events  # noqa: F401  (registers SQLite pragmas)
    from tracker import models  # noqa: F401
    from tracker.extensions import csrf, db, htmx, limiter, login_manager, migrate

    db.init_app(app)
    app.teardown_request(_engine_events.end_read_transaction)
    migrate.init_app(app, db, directory=str(ROOT / "migrations"))
    login_manager.init_app(app)
    login_manager.session_protection = None  # the server-side session row is the protection
    csrf.init_app(app)
    htmx.init_app(app)
    limiter.init_app(app)

    from tracker import cache

    cache.init_app(app)

    from tracker import anchoring

    anchoring.init_app(app)


def _register_handlers(app):
    from tracker import cli, security, templating
    from tracker.htmx import append_oob_flash
    from tracker.views import register_blueprints

    register_blueprints(app)
    app.before_request(security.refuse_nul_bytes)
    app.after_request(append_oob_flash)
    app.after_request(security.set_security_headers)
    cli.register(app)
    templating.register(app)


def _configure_logging(app):
    if not app.debug and not app.testing:
        logging.basicConfig(level=logging.INFO)
    if app.config.get("SECURITY_LOG_FILE"):
        handler = logging.FileHandler(app.config["SECURITY_LOG_FILE"])
        handler.setFormatter(logging.Formatter("%(message)s"))
        security_log = logging.getLogger("tracker.security")
        if not any(getattr(h, "baseFilename", None) == handler.baseFilename for h in security_log.handlers):
            security_log.addHandler(handler)
        security_log.setLevel(logging.INFO)
