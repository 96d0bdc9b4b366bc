"""`make run`'s gunicorn settings (scripts/gunicorn_run.py): the demo accounts printed last, quiet logs."""
import os
import runpy
import stat
from pathlib import Path
from types import SimpleNamespace

import pytest
from gunicorn.glogging import Logger

CONFIG = Path(__file__).resolve().parent.parent / "scripts" / "gunicorn_run.py"
ACCOUNTS = "Demo accounts of this installation.\n\n  admin      admin@harbor-city.example        s3cret-one\n"


def load(monkeypatch, access_log=None):
    if access_log is None:
        monkeypatch.delenv("ACCESS_LOG", raising=False)
    else:
        monkeypatch.setenv("ACCESS_LOG", access_log)
    return runpy.run_path(str(CONFIG))


@pytest.mark.parametrize(("value", "expected"), [(None, None), ("0", None), ("1", "-"), ("yes", "-")])
def test_access_log_is_off_unless_asked_for(monkeypatch, value, expected):
    assert load(monkeypatch, value)["accesslog"] == expected


def test_static_files_are_never_logged(monkeypatch):
    logged = []
    monkeypatch.setattr(Logger, "access", lambda self, resp, req, environ, took: logged.append(environ["PATH_INFO"]))
    settings = load(monkeypatch, "1")
    assert settings["logger_class"] is settings["QuietStaticLogger"]
    logger = settings["QuietStaticLogger"].__new__(settings["QuietStaticLogger"])
    for path in ("/static/app.css", "/login", "/static/vendor/htmx.min.js", "/agencies/harbor-city"):
        logger.access(None, None, {"PATH_INFO": path}, None)
    assert logged == ["/login", "/agencies/harbor-city"]


def test_first_start_shows_the_accounts_then_later_starts_point_to_the_file(monkeypatch, tmp_path):
    banner = load(monkeypatch)["banner"]
    (tmp_path / "demo-accounts.txt").write_text(ACCOUNTS)
    first = banner("http://127.0.0.1:8000", tmp_path).splitlines()
    assert first[0] == first[-1] == "+" + "-" * (len(first[0]) - 2) + "+"
    assert all(line.startswith("| ") and line.endswith(" |") and len(line) == len(first[0]) for line in first[1:-1])
    text = [line[2:-2].rstrip() for line in first[1:-1]]
    assert text == [
        "Decree tracker is running: http://127.0.0.1:8000/login   (Ctrl-C stops it)",
        "",
        "Demo accounts of this installation.",
        "",
        "  admin      admin@harbor-city.example        s3cret-one",
        "",
        "Kept in instance/demo-accounts.txt (readable only by you); later starts point there.",
    ]
    later = [line[2:-2].rstrip() for line in banner("http://127.0.0.1:8000", tmp_path).splitlines()[1:-1]]
    assert later == [
        "Decree tracker is running: http://127.0.0.1:8000/login   (Ctrl-C stops it)",
        "",
        "Demo accounts and their passwords: instance/demo-accounts.txt",
        "Lost one? .venv/bin/flask --app wsgi users reset-password officer@harbor-city.example",
    ]


def test_accounts_written_again_are_shown_again(monkeypatch, tmp_path):
    banner = load(monkeypatch)["banner"]
    accounts = tmp_path / "demo-accounts.txt"
    accounts.write_text(ACCOUNTS)
    banner("http://127.0.0.1:8000", tmp_path)
    shown = (tmp_path / "demo-accounts.shown").stat().st_mtime
    accounts.write_text(ACCOUNTS.replace("s3cret-one", "s3cret-two"))
    os.utime(accounts, (shown + 1, shown + 1))
    assert "s3cret-two" in banner("http://127.0.0.1:8000", tmp_path)


def test_without_demo_accounts_it_says_how_to_get_a_password(monkeypatch, tmp_path):
    lines = load(monkeypatch)["banner"]("http://127.0.0.1:8000", tmp_path).splitlines()
    assert [line[2:-2].rstrip() for line in lines[1:-1]] == [
        "Decree tracker is running: http://127.0.0.1:8000/login   (Ctrl-C stops it)",
        "",
        "Lost a password? .venv/bin/flask --app wsgi users reset-password officer@harbor-city.example",
    ]
    assert not (tmp_path / "demo-accounts.shown").exists()


def test_printed_once_by_the_last_worker_of_the_first_batch(monkeypatch, capsys, tmp_path):
    settings = load(monkeypatch)
    monkeypatch.setitem(settings["post_worker_init"].__globals__, "INSTANCE", tmp_path)
    for age in (1, 2, 3):
        worker = SimpleNamespace(age=age, cfg=SimpleNamespace(workers=2), sockets=["http://127.0.0.1:8000"])
        settings["post_worker_init"](worker)
    out = capsys.readouterr().out
    assert out.count("Decree tracker is running: http://127.0.0.1:8000/login") == 1


def test_seed_demo_writes_the_accounts_file_once_readable_by_its_owner_only(tmp_path):
    from tracker.cli import _write_once

    path = tmp_path / "demo-accounts.txt"
    assert _write_once(path, "first\n") is True
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert _write_once(path, "second\n") is False
    assert path.read_text() == "first\n"
    elsewhere = tmp_path / "elsewhere.txt"
    (tmp_path / "link.txt").symlink_to(elsewhere)
    assert _write_once(tmp_path / "link.txt", "third\n") is False
    assert not elsewhere.exists()
