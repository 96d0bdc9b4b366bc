"""How a request's transaction ends (issue 18): on PostgreSQL a page read that wrote nothing ends with COMMIT, so
psycopg keeps the statements it prepared (it forgets them on every ROLLBACK, and then PostgreSQL parses and plans
each statement of each page again). Anything that wrote, failed or was not a read still ends with ROLLBACK."""
import pytest
import sqlalchemy as sa

from tests.factories import make_agency, make_module, make_requirement, make_user
from tracker.db import end_read_transaction
from tracker.models import Agency


@pytest.fixture
def ends(db):
    """The transaction ends the engine sees, in order."""
    seen = []

    def commit(conn):
        seen.append("commit")

    def rollback(conn):
        seen.append("rollback")

    sa.event.listen(db.engine, "commit", commit)
    sa.event.listen(db.engine, "rollback", rollback)
    yield seen
    sa.event.remove(db.engine, "commit", commit)
    sa.event.remove(db.engine, "rollback", rollback)


def _postgres(db):
    return db.engine.dialect.name == "postgresql"


def test_a_page_read_ends_in_commit_on_postgresql(app, db, client, auth, ends):
    module = make_module("cit", "Crisis Intervention Teams", 1)
    agency = make_agency(slug="agency-a")
    make_user("officer@example.test", role="officer", agency=agency)
    make_requirement(agency, module=module, code="CIT-001", title="Crisis line staffing")
    db.session.commit()
    auth.login("officer@example.test")
    db.session.rollback()
    ends.clear()
    assert client.get("/agencies/agency-a").status_code == 200
    assert client.get("/agencies/agency-a/dashboard").status_code == 200
    if _postgres(db):
        assert ends.count("commit") == 2 and "rollback" not in ends, ends
    else:
        assert "commit" not in ends, ends


def test_a_read_that_wrote_is_rolled_back_not_committed(app, db):
    make_agency(slug="agency-a", name="Harbor City PD")
    db.session.commit()
    with app.test_request_context("/agencies/agency-a", method="GET"):
        db.session.execute(sa.update(Agency).values(name="Changed in a GET"))
        end_read_transaction(None)
        assert db.session().in_transaction()  # left for the session's removal, which rolls back
        db.session.rollback()
    assert db.session.scalar(sa.select(Agency.name)) == "Harbor City PD"


@pytest.mark.parametrize("method, error", [("GET", RuntimeError("the view failed")), ("POST", None)])
def test_a_failed_read_or_a_write_request_is_never_committed_here(app, db, method, error):
    make_agency(slug="agency-a")
    db.session.commit()
    with app.test_request_context("/agencies/agency-a", method=method):
        db.session.execute(sa.select(Agency.id)).all()
        end_read_transaction(error)
        assert db.session().in_transaction()
        db.session.rollback()


def test_a_clean_read_is_committed_on_postgresql_only(app, db):
    make_agency(slug="agency-a")
    db.session.commit()
    with app.test_request_context("/agencies/agency-a", method="GET"):
        db.session.execute(sa.select(Agency.id)).all()
        end_read_transaction(None)
        assert db.session().in_transaction() is not _postgres(db)
        db.session.rollback()


def test_pending_orm_changes_keep_a_read_from_being_committed(app, db):
    agency = make_agency(slug="agency-a", name="Harbor City PD")
    db.session.commit()
    with app.test_request_context("/agencies/agency-a", method="GET"):
        db.session.execute(sa.select(Agency.id)).all()
        agency.name = "Changed in memory"
        end_read_transaction(None)
        assert db.session().in_transaction()
        db.session.rollback()
    assert db.session.scalar(sa.select(Agency.name)) == "Harbor City PD"


def test_what_the_view_loaded_stays_loaded_for_a_streamed_response(app, db):
    """A streamed body (the CSV export) reads the view's objects after the request's teardown has run."""
    make_agency(slug="agency-a", name="Harbor City PD")
    db.session.commit()
    db.session.expunge_all()
    with app.test_request_context("/agencies/agency-a/export.csv", method="GET"):
        agency = db.session.execute(sa.select(Agency)).scalar_one()
        end_read_transaction(None)
        assert not sa.inspect(agency).expired_attributes
        db.session.remove()  # what Flask-SQLAlchemy's teardown does next
        assert agency.id and agency.name == "Harbor City PD"
