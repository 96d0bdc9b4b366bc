"""Command-line interface: `flask --app wsgi <group> <command>`."""
import logging
import os
import sys
from pathlib import Path

import click
import sqlalchemy as sa
from flask import current_app
from flask.cli import AppGroup

from tracker.extensions import db
from tracker.models import ROLES, Agency, User
from tracker.services import accounts, checkpoints, demo
from tracker.services.catalog import CatalogError, load_catalog
from tracker.services.errors import ValidationFailed


def _quiet_security_log():
    """At the command line the audit table records everything; keep its JSON echo off the terminal
    (a SECURITY_LOG_FILE, if configured, still receives it)."""
    logging.getLogger("tracker.security").propagate = False


catalog_cli = AppGroup("catalog", help="Recommendation catalog.", callback=_quiet_security_log)
users_cli = AppGroup("users", help="User accounts.", callback=_quiet_security_log)
audit_cli = AppGroup("audit", help="Audit log.", callback=_quiet_security_log)
seed_cli = AppGroup("seed", help="Demo data.", callback=_quiet_security_log)
evidence_cli = AppGroup("evidence", help="Evidence store.", callback=_quiet_security_log)


def _fail(message):
    db.session.rollback()
    click.echo(message, err=True)
    sys.exit(1)


@catalog_cli.command("load")
@click.argument("path", required=False, type=click.Path(dir_okay=False))
def catalog_load(path):
    """Validate and load a catalog file (default: seed/catalog.yaml)."""
    path = path or str(Path(current_app.config["SEED_DIR"]) / "catalog.yaml")
    try:
        report = load_catalog(path)
    except CatalogError as exc:
        _fail(f"Catalog not loaded; nothing was changed. {len(exc.problems)} problem(s):\n{exc}")
    db.session.commit()
    click.echo(f"Catalog {path}: {report.summary()}.")


@users_cli.command("create")
@click.argument("email")
@click.option("--role", required=True, type=click.Choice(ROLES), help="admin, or a role held in --agency.")
@click.option("--agency", "agency_slug", help="Agency slug for officer, monitor and committee roles.")
@click.option("--name", default="", help="Display name.")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin.")
def users_create(email, role, agency_slug, name, password_stdin):
    """Create a user (asks for the password unless --password-stdin)."""
    agency = None
    if agency_slug:
        agency = accounts.agency_by_slug(agency_slug)
        if agency is None:
            _fail(f"No agency with slug '{agency_slug}'.")
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        user = accounts.create_user(email, password, name=name, role=role, agency=agency)
    except ValidationFailed as exc:
        _fail("User not created: " + "; ".join(f"{k}: {v}" for k, v in exc.errors.items()))
    db.session.commit()
    where = f" in {agency.slug}" if agency else ""
    click.echo(f"Created {user.email} ({role}{where}).")


@users_cli.command("unlock")
@click.argument("email")
def users_unlock(email):
    """Release an account locked after repeated failed sign-ins."""
    user = db.session.execute(sa.select(User).where(User.email == email.strip().lower())).scalar_one_or_none()
    if user is None:
        _fail(f"No user with email {email}.")
    accounts.unlock_user(user)
    db.session.commit()
    click.echo(f"Unlocked {user.email}.")


@users_cli.command("reset-password")
@click.argument("email")
def users_reset_password(email):
    """Give a user a new random password (printed once) and end their sessions."""
    user = db.session.execute(sa.select(User).where(User.email == email.strip().lower())).scalar_one_or_none()
    if user is None:
        _fail(f"No user with email {email}.")
    password = accounts.random_password()
    accounts.set_password(user, password)
    db.session.commit()
    click.echo(f"New password for {user.email}: {password}")


@users_cli.command("list")
def users_list():
    """List users with their roles."""
    for user in db.session.execute(sa.select(User).order_by(User.email)).scalars():
        roles = ["admin"] if user.is_admin else []
        roles += [f"{m.role}@{m.agency.slug}" for m in user.memberships]
        flags = "" if user.active else " (disabled)"
        flags += " (locked)" if user.locked_at else ""
        click.echo(f"{user.email}\t{', '.join(roles) or '-'}{flags}")


@audit_cli.command("verify")
@click.option("--checkpoint", "checkpoint_files", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="A checkpoint file kept outside this installation (from a report, a package or a backup).")
@click.option("--public-key", "public_keys", multiple=True, help="A trusted public key (base64), e.g. an older one.")
def audit_verify(checkpoint_files, public_keys):
    """Walk the hash chain and hold it against every signed checkpoint; name the first event that fails."""
    import json

    given = []
    for name in checkpoint_files:
        try:
            doc = json.loads(Path(name).read_text(encoding="utf-8"))
            # A backup's or an evidence package's manifest.json carries its checkpoint inside.
            given.append((name, doc.get("audit_checkpoint", doc) if isinstance(doc, dict) else doc))
        except ValueError:
            given.append((name, None))
    try:
        report = checkpoints.verify(given, public_keys)
    except ValueError as exc:
        _fail(f"Audit chain not checked: {exc}")
    if not report.ok:
        where = f" at event #{report.bad_event_id}" if report.bad_event_id else ""
        click.echo(f"Audit chain BROKEN{where}: {report.problems[0]}. {report.checked} event(s) before it verified.",
                   err=True)
        for problem in report.problems[1:]:
            click.echo(f"Also: {problem}.", err=True)
        sys.exit(1)
    newest = report.newest
    against = ", no checkpoint to hold it against"
    if newest:
        against = (f", against {report.checkpoints} signed checkpoint(s) (newest: event #{newest['event_id']}, "
                   f"{newest['created_at'][:19].replace('T', ' ')} UTC)")
    click.echo(f"Audit chain OK: {report.checked} event(s) verified{against}.")


@audit_cli.command("checkpoint")
@click.option("--if-due", is_flag=True, help="Only when events older than AUDIT_CHECKPOINT_MINUTES are not covered "
                                             "(for cron).")
def audit_checkpoint(if_due):
    """Sign the chain's head now (a JSON copy goes to AUDIT_CHECKPOINT_DIR)."""
    if not checkpoints.enabled():
        _fail("Audit checkpoints are off (AUDIT_CHECKPOINTS=off): nothing signed.")
    if if_due:
        from tracker import anchoring

        made = anchoring.make_if_due()
    else:
        made = checkpoints.make("manual")
        db.session.commit()
    if made is None:
        click.echo("No checkpoint made: " + ("none is due." if if_due else "the audit log is empty."))
        return
    click.echo(f"Checkpoint #{made.id}: event #{made.event_id} ({made.event_count} event(s)), hash {made.event_hash}, "
               f"key {made.key_id}; copy in {current_app.config['AUDIT_CHECKPOINT_DIR']}.")


@seed_cli.command("demo")
@click.option("--force", is_flag=True, help="Load even if agencies already exist.")
def seed_demo(force):
    """Load the demo agency and users (only into an empty database) and print their passwords."""
    if not force and db.session.execute(sa.select(Agency.id).limit(1)).first():
        click.echo("Demo data not loaded: the database already has agencies.")
        return
    try:
        credentials = demo.load_demo(Path(current_app.config["SEED_DIR"]) / "demo.yaml")
    except ValidationFailed as exc:
        _fail(f"Demo not loaded: {exc}")
    db.session.commit()
    click.echo("Demo data loaded. Sign in at /login with one of these accounts "
               "(passwords are random for this installation):")
    click.echo("\n".join(_account_lines(credentials)))
    path = Path(current_app.instance_path) / DEMO_ACCOUNTS_FILE
    if _write_once(path, _demo_accounts_text(credentials)):
        click.echo(f"Also written to {_shown(path)} (readable only by you).")
    else:
        click.echo(f"{_shown(path)} already exists and was left as it is: the passwords above are the new ones.")


DEMO_ACCOUNTS_FILE = "demo-accounts.txt"


def _account_lines(credentials):
    return [f"  {role:<10} {email:<32} {password}" for email, role, password in credentials]


def _demo_accounts_text(credentials):
    return "\n".join([
        "Demo accounts of this installation (a fictional agency and people).",
        "Passwords are random, made when the demo was loaded. Sign in at /login.",
        "Lost one? .venv/bin/flask --app wsgi users reset-password EMAIL prints a new one.",
        "",
        *_account_lines(credentials),
    ]) + "\n"


def _write_once(path, text):
    """Create the file readable by its owner only; an existing file (or symlink) is never replaced."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    return True


def _shown(path):
    """The path as the user would type it from the current folder."""
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


@evidence_cli.command("sweep")
@click.option("--min-age-hours", default=24, show_default=True, help="Only files older than this.")
def evidence_sweep(min_age_hours):
    """Remove stored files that no evidence row refers to (left by an interrupted upload)."""
    from tracker.services.evidence import remove_orphan_blobs

    removed = remove_orphan_blobs(min_age_seconds=min_age_hours * 3600)
    click.echo(f"Removed {removed} unreferenced file(s).")


@click.command("backup")
@click.argument("target", type=click.Path(file_okay=False))
def backup_command(target):
    """Back up the database and evidence files into a new folder TARGET."""
    from tracker.services.backup import BackupError, backup

    try:
        manifest = backup(target)
    except BackupError as exc:
        _fail(f"Backup failed: {exc}")
    db.session.rollback()
    click.echo(f"Backup written to {target}: {manifest['database']}, {manifest['evidence_files']} evidence file(s), "
               f"audit head #{manifest['audit_head']['id'] if manifest['audit_head'] else '-'}.")


mail_cli = AppGroup("mail", help="E-mail: delivery, digests, deadline reminders.", callback=_quiet_security_log)


def _mail_ready():
    from tracker import mailer

    try:
        mailer.transport(current_app.config)
    except mailer.MailConfigError as exc:
        _fail(str(exc))
    return mailer


@mail_cli.command("send")
def mail_send():
    """One pass (for cron): assemble the digests that are due, deliver every message due now."""
    mailer = _mail_ready()
    result = mailer.send_pass()
    click.echo(f"Mail: {mailer.summary(result)}.")


@mail_cli.command("worker")
@click.option("--poll", type=int, default=None, help="Seconds between passes (default MAIL_POLL_SECONDS).")
@click.option("--quiet", is_flag=True, help="Print nothing but problems (make run starts it so).")
def mail_worker(poll, quiet):
    """Deliver continuously: a pass every --poll seconds, deadline reminders every hour. Ctrl-C stops it."""
    mailer = _mail_ready()
    poll = poll or current_app.config["MAIL_POLL_SECONDS"]
    echo = (lambda _text: None) if quiet else click.echo
    target = current_app.config["SMTP_HOST"] or current_app.config["MAIL_DIR"]
    echo(f"Mail worker: delivering to {target} every {poll} s (Ctrl-C stops it).")
    try:
        mailer.worker_loop(poll, echo=echo)
    except KeyboardInterrupt:
        echo("Mail worker stopped.")


@mail_cli.command("reminders")
def mail_reminders():
    """Write today's deadline reminders (idempotent: a second run the same day writes nothing)."""
    from tracker import mailer

    written = mailer.run_reminders()
    click.echo(f"Reminders: {len(written)} notification(s) written.")


def register(app):
    app.cli.add_command(backup_command)
    for group in (catalog_cli, users_cli, audit_cli, seed_cli, evidence_cli, mail_cli):
        app.cli.add_command(group)
