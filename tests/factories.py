"""Builders with defaults and unique sequences. Each flushes; tests commit when they need to."""
import itertools
from datetime import date

from tracker.extensions import db
from tracker.models import (
    Agency,
    Citation,
    ComplianceLevel,
    ComplianceScale,
    Instrument,
    Membership,
    Module,
    Recommendation,
    Requirement,
    Source,
    User,
)
from tracker.passwords import hash_password

PASSWORD = "correct horse battery staple"  # noqa: S105
_seq = itertools.count(1)
_hashes = {}


def _n():
    return next(_seq)


def password_hash():
    # Hash once per argon2 settings; tests are fast and still use real argon2id.
    from flask import current_app

    key = current_app.config["ARGON2_MEMORY_KIB"]
    if key not in _hashes:
        _hashes[key] = hash_password(PASSWORD)
    return _hashes[key]


def make_user(email=None, *, role=None, agency=None, is_admin=False, **kw):
    user = User(email=email or f"user{_n()}@example.test", password_hash=password_hash(), is_admin=is_admin, **kw)
    db.session.add(user)
    db.session.flush()
    if agency is not None and role:
        db.session.add(Membership(user_id=user.id, agency_id=agency.id, role=role))
        db.session.flush()
    return user


def make_module(key="cit", name=None, position=0):
    module = db.session.query(Module).filter_by(key=key).one_or_none()
    if module is None:
        module = Module(key=key, name=name or key.upper(), description="", position=position)
        db.session.add(module)
        db.session.flush()
    return module


def make_source(key=None, **kw):
    n = _n()
    source = Source(key=key or f"source_{n}", title=kw.pop("title", f"Decree {n}"),
                    short_title=kw.pop("short_title", f"Decree {n}"), jurisdiction=kw.pop("jurisdiction", "Testville"),
                    kind=kw.pop("kind", "consent_decree"), **kw)
    db.session.add(source)
    db.session.flush()
    return source


def make_scale(key=None):
    n = _n()
    scale = ComplianceScale(key=key or f"scale_{n}", name=f"Scale {n}")
    scale.levels = [
        ComplianceLevel(key="not_assessed", label="Not yet assessed", kind="unassessed", rank=0, position=0),
        ComplianceLevel(key="none", label="Not in compliance", kind="rating", rank=0, position=1),
        ComplianceLevel(key="partial", label="Partial", kind="rating", rank=1, position=2),
        ComplianceLevel(key="full", label="Full", kind="rating", rank=2, position=3),
    ]
    db.session.add(scale)
    db.session.flush()
    return scale


INSTRUMENT_TERMS = ("source_id", "sustainment_months", "approved_date", "court", "case_number")


def make_agency(slug=None, **kw):
    """An agency with its primary instrument (effective date, scale, sustainment period, source)."""
    n = _n()
    scale = kw.pop("scale", None) or make_scale()
    terms = {k: kw.pop(k) for k in INSTRUMENT_TERMS if k in kw}
    effective = kw.pop("effective_date", date(2025, 1, 1))
    agency = Agency(name=kw.pop("name", f"Agency {n}"), slug=slug or f"agency-{n}", state=kw.pop("state", "OH"), **kw)
    db.session.add(agency)
    db.session.flush()
    make_instrument(agency, short_name="Consent Decree", effective_date=effective, scale=scale, **terms)
    return agency


def make_instrument(agency, *, short_name=None, scale=None, **kw):
    position = len(agency.instruments)
    instrument = Instrument(agency_id=agency.id, short_name=short_name or f"Instrument {_n()}",
                            title=kw.pop("title", short_name or "Agreement"), position=position,
                            scale_id=(scale or agency.scale or make_scale()).id, **kw)
    db.session.add(instrument)
    db.session.flush()
    db.session.refresh(agency, ["instruments"])
    return instrument


def make_recommendation(code=None, module=None, **kw):
    module = module or make_module()
    source = kw.pop("source", None) or make_source()
    rec = Recommendation(code=code or f"TST-{_n():03d}", module_id=module.id, title=kw.pop("title", "Do a thing"),
                         summary=kw.pop("summary", "Summary."), evidence_examples=[], **kw)
    rec.citations = [Citation(source_id=source.id, paragraphs="¶ 1", basis="primary_text", position=0)]
    db.session.add(rec)
    db.session.flush()
    return rec


def make_requirement(agency, *, module=None, code=None, **kw):
    module = module or make_module()
    instrument_id = kw.pop("instrument", None) or agency.primary_instrument
    req = Requirement(agency_id=agency.id, module_id=module.id, code=code or f"REQ-{_n():03d}",
                      instrument_id=instrument_id.id, title=kw.pop("title", "A requirement"), **kw)
    db.session.add(req)
    db.session.flush()
    return req
