"""The sustainment clock, as courts set it (issue 13 section 5).

A requirement is in sustainment from
- the date a court order sets, when an administrator has recorded an order covering it (directly or through
  its module) and no filed finding below the top level came after that date; else
- the filing date of the report holding the first top-level finding of its current unbroken run of top-level
  filed findings.
A filed rating below the top level after a top-level one is a dip: it stops the clock, which starts again with
the next top-level run, and the dip is flagged. Eligible for termination = start + the instrument's
sustainment period. No clock ever starts later than today: orders dated in the future are refused, filing
dates cannot be in the future, and a start after today is not shown.
"""
import re
from dataclasses import dataclass
from datetime import date

import sqlalchemy as sa

from tracker.extensions import db
from tracker.models import (
    ComplianceLevel,
    Finding,
    Instrument,
    Module,
    MonitoringPeriod,
    Requirement,
    SustainmentOrder,
    utcnow,
)
from tracker.services import audit, monitoring
from tracker.services.agencies import add_months
from tracker.services.errors import ValidationFailed


@dataclass(frozen=True)
class Clock:
    since: date
    eligible_on: date | None
    months: int | None
    order: SustainmentOrder | None = None   # the court order that set the date, if any
    period_name: str = ""                   # else the report whose filing started it


@dataclass(frozen=True)
class Dip:
    period_name: str
    filed_on: date
    level_label: str

    def sentence(self, restarted):
        then = "the clock restarted with the next top-level finding" if restarted else \
            "the clock stopped until it is back at the top level"
        return (f"Fell to {self.level_label} in {self.period_name} (filed {self.filed_on.isoformat()}); "
                f"{then}.")


def _runs(agency, requirement_ids):
    """{requirement_id: (start of the current top-level run or None, its period name, latest Dip or None)}."""
    tops = dict(db.session.execute(
        sa.select(ComplianceLevel.scale_id, sa.func.max(ComplianceLevel.rank))
        .where(ComplianceLevel.kind == "rating").group_by(ComplianceLevel.scale_id)).all())
    query = (sa.select(Finding.requirement_id, MonitoringPeriod.name, MonitoringPeriod.end_date,
                       MonitoringPeriod.filed_on, ComplianceLevel.kind, ComplianceLevel.rank, ComplianceLevel.label,
                       ComplianceLevel.scale_id)
             .join(MonitoringPeriod, MonitoringPeriod.id == Finding.period_id)
             .join(ComplianceLevel, ComplianceLevel.id == Finding.level_id)
             .where(MonitoringPeriod.agency_id == agency.id, monitoring.counted(period=MonitoringPeriod))
             .order_by(Finding.requirement_id, MonitoringPeriod.end_date, MonitoringPeriod.id))
    if requirement_ids is not None:
        query = query.where(Finding.requirement_id.in_(requirement_ids))
    runs = {}
    for req_id, name, end_date, filed_on, kind, rank, label, scale_id in db.session.execute(query).all():
        start, start_name, dip, had_top = runs.get(req_id, (None, "", None, False))
        filed = filed_on or end_date
        if kind == "rating" and rank == tops.get(scale_id):
            if start is None:
                start, start_name = filed, name
            had_top = True
        elif kind == "rating":
            if had_top:
                dip = Dip(name, filed, label)
            start, start_name = None, ""
        runs[req_id] = (start, start_name, dip, had_top)
    return runs


def _orders_by_requirement(agency, requirement_ids, today):
    """{requirement_id: the latest order (dated today or earlier) covering it directly or through its module}."""
    orders = db.session.execute(
        sa.select(SustainmentOrder).where(SustainmentOrder.agency_id == agency.id,
                                          SustainmentOrder.order_date <= today)
        .options(sa.orm.selectinload(SustainmentOrder.requirements), sa.orm.selectinload(SustainmentOrder.modules))
        .order_by(SustainmentOrder.order_date, SustainmentOrder.id)).scalars().all()
    if not orders:
        return {}
    query = sa.select(Requirement.id, Requirement.module_id).where(Requirement.agency_id == agency.id)
    if requirement_ids is not None:
        query = query.where(Requirement.id.in_(requirement_ids))
    modules = dict(db.session.execute(query).all())
    latest = {}
    for order in orders:
        covered = {r.id for r in order.requirements} | {
            req_id for req_id, module_id in modules.items() if module_id in {m.id for m in order.modules}}
        for req_id in covered & set(modules):
            latest[req_id] = order
    return latest


def clocks(agency, requirement_ids=None):
    """({requirement_id: Clock}, {requirement_id: dip sentence}) for the agency's requirements (or some)."""
    today = utcnow().date()
    runs = _runs(agency, requirement_ids)
    orders = _orders_by_requirement(agency, requirement_ids, today)
    months_query = (sa.select(Requirement.id, Instrument.sustainment_months)
                    .join(Instrument, Instrument.id == Requirement.instrument_id)
                    .where(Requirement.agency_id == agency.id, Requirement.id.in_(set(runs) | set(orders))))
    months = dict(db.session.execute(months_query).all()) if runs or orders else {}
    result, dips = {}, {}
    for req_id in set(runs) | set(orders):
        start, start_name, dip, _had_top = runs.get(req_id, (None, "", None, False))
        order = orders.get(req_id)
        n = months.get(req_id)
        clock = None
        if order is not None and (dip is None or dip.filed_on < order.order_date):
            clock = Clock(order.order_date, add_months(order.order_date, n) if n else None, n, order=order)
        elif start is not None and start <= today:
            clock = Clock(start, add_months(start, n) if n else None, n, period_name=start_name)
        if clock is not None:
            result[req_id] = clock
        if dip is not None and (clock is None or clock.order is None):
            dips[req_id] = dip.sentence(restarted=clock is not None)
    return result, dips


CODE_SPLIT = re.compile(r"[\s,;]+")


def _order_scope(agency, codes_text, module_keys, errors):
    codes = [c for c in CODE_SPLIT.split(codes_text or "") if c]
    found = {r.code.upper(): r for r in db.session.execute(
        sa.select(Requirement).where(Requirement.agency_id == agency.id,
                                     sa.func.upper(Requirement.code).in_([c.upper() for c in codes]))).scalars()}
    unknown = [c for c in codes if c.upper() not in found]
    if unknown:
        errors["codes"] = f"No requirement of {agency.name} has the code {', '.join(unknown[:10])}."
    keys = [k for k in module_keys or [] if k]
    modules = db.session.execute(sa.select(Module).where(Module.key.in_(keys))).scalars().all()
    if len(modules) != len(set(keys)):
        errors["modules"] = "Choose modules from the list."
    if not codes and not keys:
        errors["codes"] = "Name the requirements (codes) or choose the modules the order covers."
    return list(found.values()), modules


def record_order(agency, order_date, docket_ref, codes_text, module_keys, note, *, actor):
    """An administrator records a court order starting the sustainment clock for requirements or modules."""
    errors = {}
    today = utcnow().date()
    if not isinstance(order_date, date):
        errors["order_date"] = "Enter the date the order sets for the clock as YYYY-MM-DD."
    elif order_date > today:
        errors["order_date"] = (f"The date cannot be later than today ({today.isoformat()}); record the order once "
                                "that date has come.")
    docket_ref = (docket_ref or "").strip()
    if not docket_ref:
        errors["docket_ref"] = "Cite the order, e.g. “Order of Mar 3, 2026 (Dkt. 512)”."
    elif len(docket_ref) > 300:
        errors["docket_ref"] = "The docket reference must be at most 300 characters."
    note = (note or "").strip()
    if len(note) > 2000:
        errors["note"] = "The note must be at most 2,000 characters."
    requirements, modules = _order_scope(agency, codes_text, module_keys, errors)
    if errors:
        raise ValidationFailed(errors)
    order = SustainmentOrder(agency_id=agency.id, order_date=order_date, docket_ref=docket_ref, note=note,
                             created_by_id=actor.id, requirements=requirements, modules=modules)
    db.session.add(order)
    db.session.flush()
    audit.record("sustainment_order.create", order, actor=actor, after={
        "order_date": order_date, "docket_ref": docket_ref, "requirements": sorted(r.code for r in requirements),
        "modules": sorted(m.key for m in modules), "note": note or None})
    return order


def orders(agency):
    return db.session.execute(
        sa.select(SustainmentOrder).where(SustainmentOrder.agency_id == agency.id)
        .options(sa.orm.selectinload(SustainmentOrder.requirements), sa.orm.selectinload(SustainmentOrder.modules))
        .order_by(SustainmentOrder.order_date.desc(), SustainmentOrder.id.desc())).scalars().all()
