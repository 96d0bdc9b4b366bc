"""`flask seed demo` creates its data through the services users go through: every row has its audit event."""
import sqlalchemy as sa

from tracker.models import (
    AuditEvent,
    Comment,
    CommitteeRecommendation,
    DeadlineChange,
    DecreeSection,
    Evidence,
    Finding,
    Indicator,
    IndicatorValue,
    Meeting,
    Membership,
    MonitoringPeriod,
    Requirement,
    ResponsibleEntity,
    StatusChange,
    User,
)


def _count(db, model, *where):
    return db.session.execute(sa.select(sa.func.count()).select_from(model).where(*where)).scalar()


def _events(db, *actions):
    return _count(db, AuditEvent, AuditEvent.action.in_(actions))


def test_every_demo_row_is_audited_and_the_chain_verifies(app, db):
    runner = app.test_cli_runner()
    assert runner.invoke(args=["catalog", "load"]).exit_code == 0
    result = runner.invoke(args=["seed", "demo"])
    assert result.exit_code == 0, result.output
    db.session.rollback()
    assert _count(db, Requirement) > 50 and _count(db, StatusChange) > 20
    assert _count(db, StatusChange) == _events(db, "requirement.status")
    assert _count(db, DeadlineChange) == _events(db, "requirement.due_date")
    assert _count(db, Requirement, Requirement.owner_id.is_not(None)) == _events(db, "requirement.owner")
    assert _count(db, Comment) == _events(db, "comment.create")
    assert _count(db, Evidence) == _events(db, "evidence.create", "evidence.version")
    assert _count(db, Finding) == _events(db, "finding.record", "finding.correct")
    assert _count(db, MonitoringPeriod) == _events(db, "period.create")
    assert _count(db, User) == _events(db, "user.create")
    assert _count(db, Membership) == _events(db, "membership.set")
    assert _events(db, "demo.load") == 1
    # Issue 14: the committee's meetings and recommendations, indicators with targets, values and requirements.
    assert _count(db, Meeting) == _events(db, "meeting.create") == 2
    assert _count(db, CommitteeRecommendation) == _events(db, "committee_recommendation.submit") == 2
    assert _events(db, "committee_recommendation.respond") == 1
    assert _count(db, Indicator, Indicator.target_value.is_not(None)) == _events(db, "indicator.adopt") == 3
    assert _count(db, IndicatorValue) == _events(db, "indicator.value") == 24
    assert all(i.requirements for i in db.session.execute(sa.select(Indicator)).scalars())
    # Issue 12: the agreement's own paragraphs, imported with their sections, entities and recurring duties.
    imported = db.session.execute(sa.select(Requirement).where(Requirement.recommendation_id.is_(None))
                                  .order_by(Requirement.sort_key)).scalars().all()
    assert [r.code for r in imported] == ["§ II.A ¶ 14", "§ II.A ¶ 15", "§ II.B ¶ 21", "§ II.B ¶ 22", "§ IV ¶ 40"]
    assert _count(db, DecreeSection) == 3 and _count(db, ResponsibleEntity) == 2
    assert sum(1 for r in imported if r.cadence_months) == 2 and all(r.section_id for r in imported)
    assert _events(db, "requirement.import") == 1
    verified = runner.invoke(args=["audit", "verify"])
    assert verified.exit_code == 0 and verified.output.startswith("Audit chain OK")
