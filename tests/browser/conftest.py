"""Live server + Debian chromium for browser journeys. Every page visited is checked with axe-core."""
import threading
from pathlib import Path

import pytest
from axe_playwright_python.sync_playwright import Axe
from werkzeug.serving import make_server

from tests.conftest import BASE_CONFIG
from tracker import create_app
from tracker.extensions import db

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[2]


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
def live_app(tmp_path_factory):
    """The app on a temp-file SQLite (the server thread needs its own connections), catalog loaded."""
    from tests.factories import make_user
    from tracker.services.catalog import load_catalog

    tmp = tmp_path_factory.mktemp("live")
    app = create_app({**BASE_CONFIG, "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp / 'live.db'}",
                      "EVIDENCE_DIR": str(tmp / "evidence"), "HSTS": False})
    with app.app_context():
        db.create_all()
        load_catalog(ROOT / "seed" / "catalog.yaml")
        make_user("admin@example.test", is_admin=True, name="Ada Admin")
        db.session.commit()
    return app


@pytest.fixture(scope="session")
def live_server(live_app):
    server = make_server("127.0.0.1", 0, live_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=5)


@pytest.fixture
def check_a11y():
    axe = Axe()

    def _check(page):
        results = axe.run(page)
        assert results.violations_count == 0, results.generate_report()

    return _check
