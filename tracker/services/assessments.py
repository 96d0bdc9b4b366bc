"""How a monitor rates on each kind of scale (issue 13 section 2).

- single: the monitor picks one level.
- per_level (Chicago-style): a status per ladder level (preliminary, secondary, full): in compliance, not in
  compliance, under assessment, not yet assessed or not applicable.
- percentage (Albuquerque-style): a measured share (0-100) per ladder level, compared with the level's threshold.

For the last two the finding's overall level follows from the parts: the highest ladder level in compliance with
every lower ladder level in compliance (a level marked not applicable is passed over). When the lowest assessed
level is not in compliance the overall level is the scale's lowest rating ("not in compliance"); when it is still
under assessment or not yet assessed, the overall level is the scale's "not yet assessed" level, never a rating.
"""
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from tracker.models import ASSESSMENT_STATUSES

NOT_ASSESSED = "not_yet_assessed"


@dataclass(frozen=True)
class Part:
    level: object          # a ladder ComplianceLevel
    status: str
    measured: Decimal | None = None


def ladder(scale):
    return sorted((lvl for lvl in scale.levels if lvl.ladder), key=lambda lvl: (lvl.rank, lvl.position))


def overall(scale, parts):
    """The ComplianceLevel a set of parts amounts to (see the module's docstring), or None when the scale has
    no level to express it."""
    by_level = {p.level.id: p.status for p in parts}
    reached, stopped_on = None, None
    for lvl in ladder(scale):
        status = by_level.get(lvl.id, NOT_ASSESSED)
        if status == "not_applicable":
            continue
        if status == "in_compliance":
            reached = lvl
            continue
        stopped_on = status
        break
    if reached is not None:
        return reached
    rungs = {lvl.id for lvl in ladder(scale)}
    if stopped_on == "not_in_compliance":
        floor = [lvl for lvl in scale.levels if lvl.kind == "rating" and lvl.id not in rungs]
        return min(floor, key=lambda lvl: lvl.rank) if floor else None
    return next((lvl for lvl in scale.levels if lvl.kind == "unassessed"), None)


def parse_parts(scale, form, errors):
    """Read the per-level statuses (`status-<level id>`) or measured percentages (`measured-<level id>`) from
    a submitted form; problems go to `errors` under the field's name."""
    parts = []
    for lvl in ladder(scale):
        if scale.assessment == "per_level":
            status = (form.get(f"status-{lvl.id}") or "").strip() or NOT_ASSESSED
            if status not in ASSESSMENT_STATUSES:
                errors[f"status-{lvl.id}"] = f"Choose a status for {lvl.label}."
                continue
            parts.append(Part(lvl, status))
        else:
            raw = (form.get(f"measured-{lvl.id}") or "").strip().rstrip("%").strip()
            if not raw:
                parts.append(Part(lvl, NOT_ASSESSED))
                continue
            try:
                measured = Decimal(raw.replace(",", "."))
            except InvalidOperation:
                measured = None
            if measured is None or not measured.is_finite() or not 0 <= measured <= 100:
                errors[f"measured-{lvl.id}"] = (f"{lvl.label}: enter the measured share as a number from 0 to 100 "
                                                f"(got “{raw[:20]}”), or leave it blank if not measured.")
                continue
            measured = measured.quantize(Decimal("0.01"))
            met = lvl.threshold is not None and measured >= Decimal(str(lvl.threshold))
            parts.append(Part(lvl, "in_compliance" if met else "not_in_compliance", measured))
    if parts and not errors and all(p.status == "not_applicable" for p in parts):
        errors["status"] = "At least one level must apply to the paragraph; mark the others not applicable."
    return parts


def describe(parts):
    """'Preliminary compliance: In compliance; Secondary compliance: 91.50 % (threshold 95 %)…' for one finding."""
    out = []
    for p in parts:
        if p.measured is not None:
            threshold = f" (threshold {p.level.threshold:g} %)" if p.level.threshold is not None else ""
            out.append(f"{p.level.label}: {p.measured:g} %{threshold}")
        else:
            out.append(f"{p.level.label}: {ASSESSMENT_STATUSES.get(p.status, p.status)}")
    return "; ".join(out)
