"""PostgreSQL roles for least privilege: the schema's owner runs migrations, the app runs as a role that may
only SELECT and INSERT on the audit tables (and read/write the other tables). Safe to run again.

    python scripts/db_roles.py ADMIN_URL [--owner tracker_owner] [--app tracker_app] [--check]

ADMIN_URL is a superuser (or CREATEROLE) connection to the application's database. The roles are created
when missing (LOGIN; passwords from TRACKER_OWNER_PASSWORD / TRACKER_APP_PASSWORD when set, else none, for
trust or peer authentication), the owner may create in schema public, the app role gets SELECT, INSERT,
UPDATE, DELETE on every table but the audit tables and alembic_version, USAGE on the sequences, and the same
by default on what the owner creates later. --check connects as the app role and proves UPDATE, DELETE,
TRUNCATE and ALTER on audit_event are refused (exit 1 if any is allowed).
"""
import argparse
import os
import sys

import sqlalchemy as sa

READ_ONLY = ("alembic_version",)
APPEND_ONLY = ("audit_event", "audit_checkpoint")
FORBIDDEN = {
    "UPDATE": "UPDATE audit_event SET action = action",
    "DELETE": "DELETE FROM audit_event",
    "TRUNCATE": "TRUNCATE audit_event",
    "ALTER": "ALTER TABLE audit_event DISABLE TRIGGER USER",
}


def _url(url):
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def _ident(conn, name):
    return conn.dialect.identifier_preparer.quote_identifier(name)


def ensure_role(conn, name, password=None):
    """CREATE ROLE name LOGIN when it does not exist (a concurrent creation by another run is fine)."""
    if conn.execute(sa.text("SELECT 1 FROM pg_roles WHERE rolname = :n"), {"n": name}).scalar():
        return False
    statement = f"CREATE ROLE {_ident(conn, name)} LOGIN"
    if password:
        statement += " PASSWORD " + conn.execute(sa.text("SELECT quote_literal(:p)"), {"p": password}).scalar()
    try:
        with conn.begin_nested():
            conn.exec_driver_sql(statement)
    except sa.exc.ProgrammingError as exc:  # created by another run in between
        if "already exists" not in str(exc):
            raise
        return False
    return True


def grant_app(conn, app, owner=None):
    """The app role's privileges on what exists now (and, given the owner, on what it creates later)."""
    app_q = _ident(conn, app)
    database = _ident(conn, conn.execute(sa.text("SELECT current_database()")).scalar())
    conn.exec_driver_sql(f"GRANT CONNECT ON DATABASE {database} TO {app_q}")
    conn.exec_driver_sql(f"GRANT USAGE ON SCHEMA public TO {app_q}")
    conn.exec_driver_sql(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {app_q}")
    conn.exec_driver_sql(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {app_q}")
    if owner:
        owner_q = _ident(conn, owner)
        conn.exec_driver_sql(f"ALTER DEFAULT PRIVILEGES FOR ROLE {owner_q} IN SCHEMA public "
                             f"GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {app_q}")
        conn.exec_driver_sql(f"ALTER DEFAULT PRIVILEGES FOR ROLE {owner_q} IN SCHEMA public "
                             f"GRANT USAGE, SELECT ON SEQUENCES TO {app_q}")
    existing = set(conn.execute(sa.text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")).scalars())
    for table in APPEND_ONLY + READ_ONLY:
        if table in existing:
            keep = "INSERT" if table in APPEND_ONLY else "SELECT"
            conn.exec_driver_sql(f"REVOKE ALL ON {_ident(conn, table)} FROM {app_q}")
            conn.exec_driver_sql(f"GRANT SELECT, {keep} ON {_ident(conn, table)} TO {app_q}")


def setup(url, owner, app):
    engine = sa.create_engine(_url(url))
    with engine.begin() as conn:
        for name, variable in ((owner, "TRACKER_OWNER_PASSWORD"), (app, "TRACKER_APP_PASSWORD")):
            if ensure_role(conn, name, os.environ.get(variable)):
                print(f"created role {name}")
        database = _ident(conn, conn.execute(sa.text("SELECT current_database()")).scalar())
        conn.exec_driver_sql(f"GRANT CONNECT ON DATABASE {database} TO {_ident(conn, owner)}")
        conn.exec_driver_sql(f"GRANT USAGE, CREATE ON SCHEMA public TO {_ident(conn, owner)}")
        grant_app(conn, app, owner)
    engine.dispose()
    print(f"roles ready: {owner} (owner, runs migrations), {app} (the app: SELECT and INSERT on the audit tables)")


def refused(url, app):
    """{statement kind: the database's refusal} for each forbidden statement run as the app role."""
    engine = sa.create_engine(sa.engine.make_url(_url(url)).set(username=app, password=None))
    answers = {}
    with engine.connect() as conn:
        for kind, statement in FORBIDDEN.items():
            transaction = conn.begin()
            try:
                conn.exec_driver_sql(statement)
                answers[kind] = None
            except sa.exc.DBAPIError as exc:
                answers[kind] = str(exc.orig).splitlines()[0]
            finally:
                transaction.rollback()
    engine.dispose()
    return answers


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--owner", default="tracker_owner")
    parser.add_argument("--app", default="tracker_app")
    parser.add_argument("--check", action="store_true", help="prove the app role cannot change audit_event")
    args = parser.parse_args(argv)
    if args.check:
        engine = sa.create_engine(_url(args.url))
        with engine.connect() as conn:
            present = conn.execute(sa.text("SELECT to_regclass('audit_event')")).scalar()
        engine.dispose()
        if present is None:
            print("no audit_event table in this database: run the migrations (as the owner) first", file=sys.stderr)
            return 2
        answers = refused(args.url, args.app)
        for kind, answer in answers.items():
            print(f"{kind} on audit_event as {args.app}: " + (f"refused ({answer})" if answer else "ALLOWED"))
        return 0 if all(answers.values()) else 1
    setup(args.url, args.owner, args.app)
    return 0


if __name__ == "__main__":
    sys.exit(main())
