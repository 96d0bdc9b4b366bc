"""Live server + Debian chromium for browser journeys. Every page visited is checked with axe-core.

The server speaks HTTPS on loopback with a throwaway self-signed certificate, and the app runs with
its production cookie settings (`__Host-session`, Secure, HttpOnly, SameSite=Lax), so the browser
treats the session cookie as it will in production.
"""
import ssl
import subprocess
import threading
from pathlib import Path

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import expect
from werkzeug.serving import make_server

from tests.conftest import BASE_CONFIG
from tracker import create_app
from tracker.extensions import db

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[2]

# `make test` runs these beside both feature suites on two cores, so a swap that takes half a second alone can
# take several: a longer wait for each expectation (they still fail when the page never gets there).
expect.set_options(timeout=15_000)


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/browser" in str(item.fspath):
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {
        **browser_type_launch_args,
        "executable_path": CHROMIUM,
        "args": ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"],
    }


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args):
    # The live server's certificate is self-signed for this run only; contexts made with
    # browser.new_context() pass ignore_https_errors=True themselves.
    return {**browser_context_args, "ignore_https_errors": True}


@pytest.fixture(scope="session")
def live_app(tmp_path_factory):
    """The app on a temp-file SQLite (the server thread needs its own connections), catalog loaded."""
    from tests.factories import make_user
    from tracker.services.catalog import load_catalog

    tmp = tmp_path_factory.mktemp("live")
    app = create_app({**BASE_CONFIG, "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp / 'live.db'}",
                      "EVIDENCE_DIR": str(tmp / "evidence"), "HSTS": False,
                      "SESSION_COOKIE_SECURE": True, "SESSION_COOKIE_NAME": "__Host-session"})
    with app.app_context():
        db.create_all()
        load_catalog(ROOT / "seed" / "catalog.yaml")
        make_user("admin@example.test", is_admin=True, name="Ada Admin")
        db.session.commit()
    return app


@pytest.fixture(scope="session")
def tls_context(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1, made with Debian's openssl for this run."""
    folder = tmp_path_factory.mktemp("tls")
    key, cert = folder / "key.pem", folder / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",  # noqa: S603,S607
                    "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


@pytest.fixture(scope="session")
def live_server(live_app, tls_context):
    server = make_server("127.0.0.1", 0, live_app, threaded=True, ssl_context=tls_context)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=5)


@pytest.fixture
def check_a11y():
    axe = Axe()

    def _check(page):
        # Never judge a page half-swapped: wait until htmx has no request in flight and the page has its <main>.
        page.wait_for_function("() => document.readyState === 'complete' && document.querySelector('main') "
                               "&& !document.querySelector('.htmx-request')")
        results = axe.run(page)
        assert results.violations_count == 0, results.generate_report()

    return _check
