"""gunicorn settings for `make run` (`gunicorn -c scripts/gunicorn_run.py wsgi:app`).

The mail worker (`flask --app wsgi mail worker`) runs beside gunicorn and stops with it; MAIL_WORKER=0
leaves it out.

The last thing on screen after start-up is a framed block with the address and the demo accounts, so
the access log is off unless ACCESS_LOG=1, and requests for /static/ are never logged even then.
"""
import os
import subprocess
import sys
from pathlib import Path

from gunicorn.glogging import Logger

INSTANCE = Path(__file__).resolve().parent.parent / "instance"
ACCOUNTS = "demo-accounts.txt"
SHOWN = "demo-accounts.shown"
RESET_COMMAND = ".venv/bin/flask --app wsgi users reset-password officer@harbor-city.example"


class QuietStaticLogger(Logger):
    """gunicorn's logger without access lines for static files (every page loads a dozen)."""

    def access(self, resp, req, environ, request_time):
        if environ.get("PATH_INFO", "").startswith("/static/"):
            return
        super().access(resp, req, environ, request_time)


logger_class = QuietStaticLogger
# Threads: a request waiting on the database (a lock, a slow write) does not hold its whole worker.
worker_class = "gthread"
threads = 4
accesslog = "-" if os.environ.get("ACCESS_LOG", "").strip().lower() in {"1", "true", "yes", "on"} else None


def frame(lines):
    width = max(len(line) for line in lines)
    rule = "+" + "-" * (width + 2) + "+"
    return "\n".join([rule, *(f"| {line:<{width}} |" for line in lines), rule])


def banner(url, instance):
    """The accounts in full the first time they are shown after `seed demo` wrote them, a pointer after."""
    accounts, shown = instance / ACCOUNTS, instance / SHOWN
    lines = [f"Decree tracker is running: {url}/login   (Ctrl-C stops it)", ""]
    if not accounts.exists():
        return frame([*lines, f"Lost a password? {RESET_COMMAND}"])
    if shown.exists() and shown.stat().st_mtime >= accounts.stat().st_mtime:
        return frame([*lines, f"Demo accounts and their passwords: instance/{ACCOUNTS}",
                      f"Lost one? {RESET_COMMAND}"])
    shown.touch()
    body = accounts.read_text(encoding="utf-8").rstrip("\n").splitlines()
    return frame([*lines, *body, "", f"Kept in instance/{ACCOUNTS} (readable only by you); "
                  "later starts point there."])


def post_worker_init(worker):
    # Once, from the last worker of the first batch: its "Booting worker" line is already out,
    # so the block comes after every start-up line.
    if worker.age == worker.cfg.workers:
        print("\n" + banner(str(worker.sockets[0]), INSTANCE) + "\n", flush=True)


MAIL_WORKER_PROCESS = []


def on_starting(server):
    """Start the mail worker with the server: reminders, digests and delivery (.eml files in instance/mail/
    without SMTP settings), listed at /admin/outbox."""
    if os.environ.get("MAIL_WORKER", "1").strip().lower() in {"0", "false", "no", "off"}:
        return
    root = Path(__file__).resolve().parent.parent
    MAIL_WORKER_PROCESS.append(subprocess.Popen([sys.executable, "-m", "flask", "--app", "wsgi", "mail", "worker",
                                                 "--quiet"], cwd=root))


def on_exit(server):
    for process in MAIL_WORKER_PROCESS:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
