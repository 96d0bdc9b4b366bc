"""Delivering the outbox: MIME messages (the standard library's `email`), SMTP (`smtplib`) or .eml files,
and the worker's passes. The worker, like a CLI command, owns its transactions and commits between steps;
the rules of claiming and marking are in services/outbox.py.
"""
import logging
import os
import secrets
import smtplib
import socket
import ssl
import time
from collections import namedtuple
from contextlib import contextmanager
from datetime import UTC
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, parseaddr
from pathlib import Path

from flask import current_app
from sqlalchemy.exc import DBAPIError, IntegrityError

from tracker.extensions import db
from tracker.models import utcnow
from tracker.services import notifications as notes
from tracker.services import outbox, reminders

log = logging.getLogger("tracker.mail")
BATCH = 20
MAX_BATCHES = 500  # per pass; a pass ends when nothing due is left


# What delivering one message needs, read before the transaction ends.
Job = namedtuple("Job", "id attempts to_addr mail")


# Header lines may be 998 characters (RFC 5322): a List-Unsubscribe address must stay one <URL>, never
# folded into encoded words that mail programs would not read as an address.
POLICY = SMTP.clone(max_line_length=998)


class MailConfigError(RuntimeError):
    """The settings cannot deliver mail (production without SMTP_HOST)."""


def build(message, config):
    """The MIME message of an outbox row. Header values are single lines (CR/LF never pass: they are
    removed when the row is written, and the `email` policy refuses them too)."""
    mail = EmailMessage(policy=POLICY)
    from_name, from_addr = parseaddr(config["MAIL_FROM"])
    mail["From"] = Address(display_name=notes.one_line(from_name, 100), addr_spec=from_addr)
    mail["To"] = Address(addr_spec=message.to_addr)
    mail["Subject"] = notes.one_line(message.subject)
    mail["Date"] = format_datetime(message.created_at.replace(tzinfo=UTC))
    mail["Message-ID"] = f"<outbox.{message.id}.{secrets.token_hex(6)}@{from_addr.rpartition('@')[2] or 'localhost'}>"
    mail["Auto-Submitted"] = "auto-generated"
    mail["X-Tracker-Category"] = message.category
    if message.unsubscribe_url:
        mail["List-Unsubscribe"] = f"<{message.unsubscribe_url}>"
        mail["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    mail.set_content(message.body_text)
    if message.body_html:
        mail.add_alternative(message.body_html, subtype="html")
    return mail


class SmtpTransport:
    def __init__(self, config):
        self.config = config

    @contextmanager
    def connect(self):
        cfg = self.config
        context = ssl.create_default_context()
        if cfg["SMTP_SSL"]:
            server = smtplib.SMTP_SSL(cfg["SMTP_HOST"], cfg["SMTP_PORT"], timeout=cfg["SMTP_TIMEOUT"], context=context)
        else:
            server = smtplib.SMTP(cfg["SMTP_HOST"], cfg["SMTP_PORT"], timeout=cfg["SMTP_TIMEOUT"])
        try:
            if cfg["SMTP_STARTTLS"] and not cfg["SMTP_SSL"]:
                server.starttls(context=context)
            if cfg["SMTP_USER"]:
                server.login(cfg["SMTP_USER"], cfg["SMTP_PASSWORD"])
            yield lambda mail, to_addr: server.send_message(mail, to_addrs=[to_addr])
        finally:
            try:
                server.quit()
            except (smtplib.SMTPException, OSError):
                server.close()


class FileTransport:
    """Development without an SMTP server: each message becomes MAIL_DIR/outbox.<id>.<random>.eml."""

    def __init__(self, directory):
        self.directory = Path(directory)

    @contextmanager
    def connect(self):
        self.directory.mkdir(parents=True, exist_ok=True)

        def write(mail, to_addr):
            name = mail["Message-ID"].strip("<>").split("@")[0] + ".eml"  # outbox.<id>.<random>.eml
            fd = os.open(self.directory / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(mail.as_bytes())
        yield write


def transport(config):
    if config["SMTP_HOST"]:
        return SmtpTransport(config)
    if config["TRACKER_ENV"] == "production":
        raise MailConfigError("SMTP_HOST is not set: set SMTP_HOST (and SMTP_PORT, SMTP_USER, SMTP_PASSWORD, "
                              "MAIL_FROM, MAIL_BASE_URL) in the environment to deliver mail.")
    return FileTransport(config["MAIL_DIR"])


def deliver(now=None, *, worker=None, batch=BATCH):
    """One delivery pass: claim due messages in batches, send, mark each. Returns {"sent": n, "retry": n,
    "failed": n, "withdrawn": n}. Safe to run in several processes at once."""
    config = current_app.config
    sender = transport(config)
    worker = worker or f"{socket.gethostname()}:{os.getpid()}"
    totals = dict.fromkeys(("sent", "retry", "failed", "withdrawn"), 0)
    for _ in range(MAX_BATCHES):
        db.session.commit()  # a claim is the first statement of its own transaction
        claim_id = outbox.new_claim(worker)
        claimed = outbox.claim(claim_id, now or utcnow(), batch)
        db.session.commit()
        if not claimed:
            break
        _deliver_batch(sender, claimed, claim_id, now, totals)
    return totals


def _deliver_batch(sender, claimed, claim_id, now, totals):
    """Send a claimed batch. The MIME messages are built first and the transaction ended, so no database
    lock is held while talking to the mail server (SQLite has one writer); each mark is its own short
    transaction."""
    config = current_app.config
    withdrawn = outbox.undeliverable(claimed)
    for message in [m for m in claimed if m.id in withdrawn]:
        outbox.withdraw(message, claim_id, withdrawn[message.id])
        totals["withdrawn"] += 1
    jobs = [Job(m.id, m.attempts, m.to_addr, build(m, config)) for m in claimed if m.id not in withdrawn]
    db.session.commit()
    if not jobs:
        return
    handled = set()
    try:
        with sender.connect() as send:
            for job in jobs:
                try:
                    send(job.mail, job.to_addr)
                except (smtplib.SMTPException, OSError, ValueError) as exc:
                    _failed(job, claim_id, exc, now, totals)
                else:
                    outbox.mark_sent(job, claim_id, now or utcnow())
                    totals["sent"] += 1
                db.session.commit()
                handled.add(job.id)
    except (smtplib.SMTPException, OSError) as exc:  # could not connect, or the connection broke
        for job in jobs:
            if job.id not in handled:
                _failed(job, claim_id, exc, now, totals)
        db.session.commit()


def _failed(message, claim_id, exc, now, totals):
    config = current_app.config
    error = f"{type(exc).__name__}: {exc}"
    log.warning("mail %s failed: %s", message.id, error)
    outcome = outbox.mark_failed(message, claim_id, error, now or utcnow(), max_attempts=config["MAIL_MAX_ATTEMPTS"],
                                 base_seconds=config["MAIL_RETRY_SECONDS"])
    if outcome:
        totals[outcome] += 1


def assemble_digests(now=None):
    """Daily and weekly digests due at `now`, one per user and period, each in its own transaction.
    Returns the number assembled. Running it again in the same day or week assembles nothing."""
    now = now or utcnow()
    made = 0
    for mode in ("daily", "weekly"):
        period = outbox.digest_key(mode, now, current_app.config["MAIL_DIGEST_HOUR"])
        if period is None:
            continue
        db.session.commit()
        for user_id in outbox.digest_candidates(mode, period):
            try:
                message = outbox.assemble_digest(user_id, mode, period)
                db.session.commit()
            except IntegrityError:  # another process assembled this one a moment ago
                db.session.rollback()
                continue
            made += message is not None
    return made


def send_pass(now=None, *, worker=None):
    """What `mail send` does: digests that are due, then delivery."""
    digests = assemble_digests(now)
    return {"digests": digests, **deliver(now, worker=worker)}


def run_reminders(today=None):
    """Today's reminders in one transaction. Two runs at once: the second one's duplicate key rolls it back
    (the first wrote the same reminders)."""
    try:
        written = reminders.run(today or utcnow().date())
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        return []
    return written


def worker_loop(poll_seconds, *, reminder_every=3600, stop=lambda: False, echo=print):
    """`mail worker`: reminders hourly (they are idempotent), digests and delivery every poll."""
    last_reminders = -float(reminder_every)
    while not stop():
        try:
            if time.monotonic() - last_reminders >= reminder_every:
                written = run_reminders()
                last_reminders = time.monotonic()
                if written:
                    echo(f"Reminders: {len(written)} notification(s).")
            result = send_pass()
            if any(result.values()):
                echo(summary(result))
        except DBAPIError as exc:  # the database restarting: keep the worker, try again next poll
            db.session.rollback()
            log.warning("mail worker: database error, retrying in %s s: %s", poll_seconds, exc)
        finally:
            db.session.remove()
        time.sleep(poll_seconds)


def summary(result):
    return ", ".join(f"{value} {name}" for name, value in result.items())
