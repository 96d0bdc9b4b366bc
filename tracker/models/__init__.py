"""All models, re-exported so `from tracker.models import Requirement` works."""
from tracker.models.agencies import LEVEL_KINDS, Agency, ComplianceLevel, ComplianceScale
from tracker.models.audit import AuditEvent
from tracker.models.base import Base, utcnow
from tracker.models.catalog import CADENCES, CITATION_BASIS, SOURCE_KINDS, Citation, Module, Recommendation, Source
from tracker.models.evidence import REVIEW_STATES, VISIBILITIES, Evidence, EvidenceReview
from tracker.models.monitoring import Finding, MonitoringPeriod
from tracker.models.requirements import STATUSES, Comment, DeadlineChange, Requirement, StatusChange
from tracker.models.users import AGENCY_ROLES, ROLES, ApiToken, FormSubmission, Membership, User, UserSession

__all__ = [
    "AGENCY_ROLES", "ApiToken", "CADENCES", "CITATION_BASIS", "LEVEL_KINDS", "REVIEW_STATES", "ROLES", "SOURCE_KINDS",
    "STATUSES", "VISIBILITIES", "Agency", "AuditEvent", "Base", "Citation", "Comment", "ComplianceLevel",
    "ComplianceScale", "DeadlineChange", "Evidence", "EvidenceReview", "Finding", "FormSubmission", "Membership",
    "Module", "MonitoringPeriod", "Recommendation", "Requirement", "Source", "StatusChange", "User", "UserSession",
    "utcnow",
]
