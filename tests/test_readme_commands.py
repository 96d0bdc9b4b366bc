"""A newcomer's path: `make setup`, then every row of the README's command table pasted as printed.

Each test works in a copy of this checkout (tracked and new files, not instance/) with the real .venv
linked in, so the developer's own instance/ is never touched. The .venv holds an editable install of
this checkout: `make -o .venv/.installed` keeps make from ever running pip in the copy, which would
point that install at the copy.
"""
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

# The commands use the default SQLite file in instance/, whatever the suite runs on: once is enough.
pytestmark = pytest.mark.skipif(bool(os.environ.get("TEST_DATABASE_URL")),
                                reason="runs in the SQLite run; the README commands use SQLite in instance/")

ROOT = Path(__file__).resolve().parent.parent
FLASK = ".venv/bin/flask --app wsgi"
PASSWORD = "a quiet harbor at dawn 42"  # noqa: S105

# Exit code and a pattern the whole output (stdout then stderr) must match, per table row.
EXPECTED = {
    f"{FLASK} db upgrade": (0, r"INFO  \[alembic.runtime.migration\] Context impl SQLiteImpl\.\n.*"),
    f"{FLASK} catalog load": (0, r"Catalog .*/seed/catalog\.yaml: 0 added, 0 updated, 0 retired, 75 unchanged .*\n"),
    f"{FLASK} seed demo": (0, r"Demo data not loaded: the database already has agencies\.\n"),
    f'{FLASK} users create ada@harbor-city.example --role officer --agency harbor-city --name "Ada Park"':
        (0, r"Created ada@harbor-city\.example \(officer in harbor-city\)\.\n"
            r".*Password: .*Repeat for confirmation: \n"),
    f"{FLASK} users reset-password officer@harbor-city.example":
        (0, r"New password for officer@harbor-city\.example: \S{20,}\n"),
    f"{FLASK} users unlock officer@harbor-city.example": (0, r"Unlocked officer@harbor-city\.example\.\n"),
    f"{FLASK} users list": (0, "ada@harbor-city.example\tofficer@harbor-city\n"
                              "admin@harbor-city.example\tadmin\n"
                              "committee@harbor-city.example\tcommittee@harbor-city\n"
                              "monitor@harbor-city.example\tmonitor@harbor-city\n"
                              "officer2@harbor-city.example\tofficer@harbor-city\n"
                              "officer@harbor-city.example\tofficer@harbor-city\n"),
    f"{FLASK} audit checkpoint": (0, r"Checkpoint #\d+: event #\d+ \(\d+ event\(s\)\), hash [0-9a-f]{64}, "
                                    r"key [0-9a-f]{16}; copy in .*/instance/audit-checkpoints\.\n"),
    f"{FLASK} audit verify": (0, r"Audit chain OK: \d+ event\(s\) verified, against \d+ signed checkpoint\(s\) "
                                r"\(newest: event #\d+, [\d-]+ [\d:]+ UTC\)\.\n"),
    f"{FLASK} evidence sweep": (0, r"Removed 0 unreferenced file\(s\)\.\n"),
    f"{FLASK} backup instance/backups/$(date +%Y%m%d-%H%M%S)":
        (0, r"Backup written to instance/backups/\d{8}-\d{6}: database\.sqlite3, \d+ evidence file\(s\), "
            r"audit head #\d+\.\n"),
}
# What the user types at a prompt.
TYPED = {f'{FLASK} users create ada@harbor-city.example --role officer --agency harbor-city --name "Ada Park"':
         f"{PASSWORD}\n{PASSWORD}\n"}


def readme_commands():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Command line\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `([^`]+)` \|", section, flags=re.MULTILINE)


def fresh_terminal():
    """What a new shell has: none of this test run's settings (TRACKER_ENV=testing, databases, make's)."""
    keep = ("PATH", "HOME", "USER", "LANG", "LC_ALL", "TMPDIR")
    return {name: os.environ[name] for name in keep if name in os.environ}


def copy_checkout(target):
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=ROOT, capture_output=True, check=True).stdout
    for name in filter(None, listed.split(b"\0")):
        source = ROOT / os.fsdecode(name)
        if source.is_file():  # a file deleted in the work tree is still listed until the deletion is committed
            destination = target / os.fsdecode(name)
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination)
    (target / ".venv").symlink_to(ROOT / ".venv")
    return target


def run(command, cwd, typed=None, env=None):
    # Its own session: no controlling terminal, so a password prompt reads what is "typed" on stdin.
    result = subprocess.run(["bash", "-c", command], cwd=cwd, input=typed or "", capture_output=True, text=True,
                            env=env or fresh_terminal(), timeout=300, start_new_session=True)
    return result.returncode, result.stdout + result.stderr


@pytest.fixture
def checkout(tmp_path):
    if not (ROOT / ".git").exists():
        pytest.skip("needs a git checkout to copy")
    return copy_checkout(tmp_path / "checkout")


def test_every_row_of_the_command_table_has_an_expectation():
    assert readme_commands() == list(EXPECTED)


def test_readme_commands_work_as_printed_after_make_setup(checkout):
    code, output = run("make -o .venv/.installed setup", checkout)
    assert code == 0, output
    accounts = checkout / "instance" / "demo-accounts.txt"
    assert stat.S_IMODE(accounts.stat().st_mode) == 0o600
    printed = re.findall(r"^  \w+ +\S+@harbor-city\.example +\S+$", output, flags=re.MULTILINE)
    assert len(printed) == 5
    assert accounts.read_text().splitlines()[-5:] == printed
    assert (checkout / "instance" / "tracker-env").read_text() == "development\n"

    for command in readme_commands():
        code, output = run(command, checkout, TYPED.get(command))
        want_code, pattern = EXPECTED[command]
        assert code == want_code, f"{command}\n{output}"
        assert re.fullmatch(pattern, output, flags=re.DOTALL), f"{command}\n{output}"

    backups = list((checkout / "instance" / "backups").iterdir())
    assert [sorted(p.name for p in b.iterdir()) for b in backups] == [["database.sqlite3", "evidence",
                                                                     "manifest.json"]]
    assert accounts.read_text().splitlines()[-5:] == printed, "seed demo never rewrites the accounts file"
    code, output = run(f"{ROOT}/.venv/bin/python -c 'import tracker; print(tracker.__file__)'", "/")
    assert (code, output) == (0, f"{ROOT}/tracker/__init__.py\n"), "the shared .venv must still point here"


def test_production_refuses_to_start_without_secret_key(checkout):
    code, output = run(f"{FLASK} users list", checkout)
    assert code == 1
    assert output.startswith("Configuration error: SECRET_KEY is not set.")


def test_the_variable_wins_over_the_development_marker(checkout):
    (checkout / "instance").mkdir()
    (checkout / "instance" / "tracker-env").write_text("development\n")
    code, output = run(f"{FLASK} users list", checkout, env={**fresh_terminal(), "TRACKER_ENV": "production"})
    assert code == 1
    assert output.startswith("Configuration error: SECRET_KEY is not set.")
    code, output = run(".venv/bin/python -c 'from wsgi import app; print(app.config[\"TRACKER_ENV\"])'", checkout)
    assert (code, output) == (0, "development\n")

