"""The lock files hold exactly what pyproject.toml needs: requirements.lock for running (make run, pip-audit,
the SBOM), requirements-test.lock for what the test extra adds. A dependency added to pyproject.toml
without `make lock` fails here rather than on a fresh clone."""
import re
import tomllib
from importlib.metadata import requires
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
# In every virtualenv already, so `pip freeze` leaves them out (pip-audit needs pip).
INSTALLERS = {"pip", "setuptools", "wheel"}
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def pins(name):
    lines = (ROOT / name).read_text(encoding="utf-8").splitlines()
    found = {}
    for line in lines:
        if line.strip() and not line.startswith("#"):
            package, version = line.split("==")
            found[canonicalize_name(package)] = version.strip()
    return found


def _depends_on_the_python(requirement):
    return bool(re.search(r"python_|platform|implementation|os_name|sys_", str(requirement.marker or "")))


def closure(requirements, pinned):
    """Every package the requirements pull in (markers evaluated for this Python), each checked against
    its pin."""
    needed, queue = set(), [(Requirement(r), "") for r in requirements]
    while queue:
        requirement, extra = queue.pop()
        if requirement.marker and not requirement.marker.evaluate({**default_environment(), "extra": extra}):
            continue
        name = canonicalize_name(requirement.name)
        if name in INSTALLERS or (name not in pinned and _depends_on_the_python(requirement)):
            continue  # the locks are resolved for one Python (README); pip adds such a package elsewhere
        assert name in pinned, f"{requirement} is not in the lock files: run make lock"
        assert requirement.specifier.contains(pinned[name], prereleases=True), f"{name}=={pinned[name]}: {requirement}"
        extras = requirement.extras or {""}
        if (name, frozenset(extras)) in needed:
            continue
        needed.add((name, frozenset(extras)))
        for dependency in requires(requirement.name) or []:
            queue.extend((Requirement(dependency), e) for e in extras)
    return {name for name, _ in needed}


def test_runtime_lock_is_exactly_what_the_project_needs():
    runtime = pins("requirements.lock")
    assert closure(PROJECT["dependencies"], runtime) == set(runtime)


def test_test_lock_adds_exactly_what_the_test_extra_needs():
    runtime, test = pins("requirements.lock"), pins("requirements-test.lock")
    assert not set(runtime) & set(test), "a package is pinned in both lock files"
    needed = closure(PROJECT["dependencies"] + PROJECT["optional-dependencies"]["test"], {**runtime, **test})
    assert needed == set(runtime) | set(test)
    assert {"pytest", "pip-audit", "cyclonedx-bom"} <= set(test)
