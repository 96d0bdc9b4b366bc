"""Project rules checked on the source itself (SECURITY-PLAN T31, the local rules): no raw SQL, no
bulk UPDATE or DELETE on a version-checked table, no `|safe` or disabled autoescaping in templates.

ruff (S608, S704) and bandit cover the general cases; these are the rules specific to this code.
Every exception is listed below with the reason it is safe, and an exception that no longer matches
anything fails too, so the list stays true.
"""
import ast
import re
from pathlib import Path

from tracker.models import Base

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "tracker"
TEMPLATES = ROOT / "templates"

RAW_SQL_ALLOWED = {
    "tracker/db.py": "SQLite PRAGMAs and BEGIN IMMEDIATE: fixed statements, no input",
    "tracker/models/audit.py": "the append-only triggers: fixed DDL",
    "tracker/models/monitoring.py": "a partial index predicate: fixed DDL",
    "tracker/models/decree.py": "a partial index predicate (one open occurrence): fixed DDL",
    "tracker/services/audit.py": "pg_advisory_xact_lock with a bound parameter",
    "tracker/services/backup.py": "integrity check and last audit row of the sqlite3 backup copy: fixed statements",
}
SAFE_FILTER_ALLOWED = {
    ("auth/second_factor.html", "qr"): "an SVG drawn by segno from the server's own otpauth URI",
}
RAW_SQL_CALLS = {"text", "exec_driver_sql", "literal_column"}


def _python_files():
    return sorted(APP.rglob("*.py"))


def _called_name(node):
    func = node.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None


def _is_string(node):
    return isinstance(node, ast.JoinedStr) or (isinstance(node, ast.Constant) and isinstance(node.value, str))


def test_no_raw_sql_outside_the_listed_places():
    found = {}
    for path in _python_files():
        rel = path.relative_to(ROOT).as_posix()
        for node in ast.walk(ast.parse(path.read_text(), rel)):
            if not isinstance(node, ast.Call):
                continue
            name = _called_name(node)
            if name in RAW_SQL_CALLS or (name == "execute" and node.args and _is_string(node.args[0])):
                found.setdefault(rel, []).append(node.lineno)
    unexpected = {rel: lines for rel, lines in found.items() if rel not in RAW_SQL_ALLOWED}
    assert not unexpected, f"raw SQL (use SQLAlchemy expressions with bound parameters): {unexpected}"
    stale = set(RAW_SQL_ALLOWED) - set(found)
    assert not stale, f"listed as raw SQL but no longer is; remove from RAW_SQL_ALLOWED: {stale}"


def _versioned_models():
    return {mapper.class_.__name__ for mapper in Base.registry.mappers if mapper.version_id_col is not None}


def test_versioned_tables_are_known():
    # The rule below is only as good as this set: a table checked by row_version must be in it.
    assert _versioned_models() == {"Requirement", "CommitteeRecommendation", "PolicyDocument"}


def test_no_bulk_update_or_delete_on_a_version_checked_table():
    """A bulk UPDATE skips the row_version check and the history row: concurrent edits would be lost."""
    versioned = _versioned_models()
    found = []
    for path in _python_files():
        rel = path.relative_to(ROOT).as_posix()
        for node in ast.walk(ast.parse(path.read_text(), rel)):
            if isinstance(node, ast.Call) and _called_name(node) in {"update", "delete"} and node.args:
                target = node.args[0]
                name = target.id if isinstance(target, ast.Name) else getattr(target, "attr", None)
                if name in versioned:
                    found.append(f"{rel}:{node.lineno}")
    assert not found, f"bulk update/delete of a version-checked table: {found}"


def test_templates_never_disable_escaping():
    found, used = [], set()
    for path in sorted(TEMPLATES.rglob("*.html")):
        rel = path.relative_to(TEMPLATES).as_posix()
        text = path.read_text()
        if re.search(r"{%-?\s*autoescape\s+false", text):
            found.append(f"{rel}: autoescape false")
        for match in re.finditer(r"{{-?\s*([\w.]+)\s*\|\s*safe\b", text):
            key = (rel, match.group(1))
            if key in SAFE_FILTER_ALLOWED:
                used.add(key)
            else:
                found.append(f"{rel}: {match.group(0)}")
        if re.search(r"\|\s*safe\b", re.sub(r"{{-?\s*[\w.]+\s*\|\s*safe\b", "", text)):
            found.append(f"{rel}: |safe in a form this check does not read")
    assert not found, f"escaping turned off in templates: {found}"
    assert used == set(SAFE_FILTER_ALLOWED), f"stale SAFE_FILTER_ALLOWED entries: {set(SAFE_FILTER_ALLOWED) - used}"
