"""Configuration: TRACKER_ENV, the development marker `make run` leaves in instance/, and SECRET_KEY."""
import os
import stat

import pytest

from tracker.config import ConfigError, ensure_secret_key, environment, from_env

SETTINGS = ("TRACKER_ENV", "SECRET_KEY", "SESSION_COOKIE_SECURE", "HSTS", "MFA_REQUIRED_ROLES", "DATABASE_URL",
            "LOCKOUT_MODE", "MAX_UPLOAD_MB", "TRUSTED_HOSTS")


@pytest.fixture
def clean_env(monkeypatch):
    for name in SETTINGS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def mark_development(instance):
    (instance / "tracker-env").write_text("development\n")


def test_without_variable_or_marker_it_is_production(clean_env, tmp_path):
    config = from_env(tmp_path)
    assert config["TRACKER_ENV"] == "production"
    assert config["SESSION_COOKIE_SECURE"] is True
    assert config["SESSION_COOKIE_NAME"] == "__Host-session"
    assert config["HSTS"] is True
    assert config["MFA_REQUIRED_ROLES"] == ["admin", "monitor"]


def test_marker_written_by_make_run_makes_a_development_installation(clean_env, tmp_path):
    mark_development(tmp_path)
    config = from_env(tmp_path)
    assert config["TRACKER_ENV"] == "development"
    assert config["SESSION_COOKIE_SECURE"] is False
    assert config["SESSION_COOKIE_NAME"] == "tracker_session"
    assert config["HSTS"] is False
    assert config["MFA_REQUIRED_ROLES"] == []


@pytest.mark.parametrize("value", ["production", "testing"])
def test_the_variable_wins_over_the_marker(clean_env, tmp_path, value):
    mark_development(tmp_path)
    clean_env.setenv("TRACKER_ENV", value)
    assert environment(tmp_path) == value


def test_a_wrong_marker_is_named(clean_env, tmp_path):
    (tmp_path / "tracker-env").write_text("produktion\n")
    with pytest.raises(ConfigError) as exc:
        environment(tmp_path)
    assert str(exc.value) == f"{tmp_path / 'tracker-env'} must be production, development or testing, got 'produktion'"


def test_a_wrong_variable_is_named(clean_env, tmp_path):
    clean_env.setenv("TRACKER_ENV", "staging")
    with pytest.raises(ConfigError) as exc:
        environment(tmp_path)
    assert str(exc.value) == "TRACKER_ENV must be production, development or testing, got 'staging'"


def test_production_refuses_to_start_without_secret_key(clean_env, tmp_path):
    config = from_env(tmp_path)
    with pytest.raises(ConfigError) as exc:
        ensure_secret_key(config, tmp_path)
    assert str(exc.value).startswith("SECRET_KEY is not set.")
    assert not (tmp_path / "secret_key").exists()


def test_production_with_secret_key_starts_and_writes_nothing(clean_env, tmp_path):
    clean_env.setenv("SECRET_KEY", "k" * 64)
    config = from_env(tmp_path)
    ensure_secret_key(config, tmp_path)
    assert config["SECRET_KEY"] == "k" * 64
    assert sorted(os.listdir(tmp_path)) == []


def test_development_keeps_one_random_key_readable_by_its_owner_only(clean_env, tmp_path):
    mark_development(tmp_path)
    first = from_env(tmp_path)
    ensure_secret_key(first, tmp_path)
    second = from_env(tmp_path)
    ensure_secret_key(second, tmp_path)
    assert len(first["SECRET_KEY"]) == 64
    assert second["SECRET_KEY"] == first["SECRET_KEY"]
    assert stat.S_IMODE((tmp_path / "secret_key").stat().st_mode) == 0o600


@pytest.mark.parametrize(("url", "expected"), [
    ("postgres://u@db/tracker", "postgresql+psycopg://u@db/tracker"),
    ("postgresql://u@db/tracker", "postgresql+psycopg://u@db/tracker"),
    ("postgresql+psycopg://u@db/tracker", "postgresql+psycopg://u@db/tracker"),
])
def test_database_url_gets_the_psycopg_driver(clean_env, tmp_path, url, expected):
    clean_env.setenv("DATABASE_URL", url)
    assert from_env(tmp_path)["SQLALCHEMY_DATABASE_URI"] == expected


def test_default_database_is_a_file_in_instance(clean_env, tmp_path):
    assert from_env(tmp_path)["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path / 'tracker.db'}"


@pytest.mark.parametrize(("name", "value", "message"), [
    ("LOCKOUT_MODE", "forever", "LOCKOUT_MODE must be admin or timed, got 'forever'"),
    ("MAX_UPLOAD_MB", "lots", "MAX_UPLOAD_MB must be a whole number, got 'lots'"),
])
def test_bad_values_are_named(clean_env, tmp_path, name, value, message):
    clean_env.setenv(name, value)
    with pytest.raises(ConfigError) as exc:
        from_env(tmp_path)
    assert str(exc.value) == message


def test_lists_ignore_blanks(clean_env, tmp_path):
    clean_env.setenv("TRUSTED_HOSTS", " tracker.example, ,www.tracker.example ")
    clean_env.setenv("MFA_REQUIRED_ROLES", "")
    config = from_env(tmp_path)
    assert config["TRUSTED_HOSTS"] == ["tracker.example", "www.tracker.example"]
    assert config["MFA_REQUIRED_ROLES"] == []
