"""All models, re-exported so `from tracker.models import Requirement` works."""
from tracker.models.agencies import ASSESSMENT_KINDS, LEVEL_KINDS, Agency, ComplianceLevel, ComplianceScale
from tracker.models.audit import AuditCheckpoint, AuditEvent
from tracker.models.base import Base, utcnow
from tracker.models.catalog import (
    CADENCE_MONTHS,
    CADENCES,
    CITATION_BASIS,
    SOURCE_KINDS,
    Citation,
    Module,
    Recommendation,
    Source,
)
from tracker.models.committee import (
    RECOMMENDATION_STATES,
    RESPONSE_DECISIONS,
    CommitteeRecommendation,
    CommitteeResponse,
    Meeting,
)
from tracker.models.decree import (
    INSTRUMENT_KINDS,
    OCCURRENCE_STATES,
    DecreeSection,
    Instrument,
    Occurrence,
    RequirementLink,
    ResponsibleEntity,
)
from tracker.models.document_requests import (
    EXTENSION_STATES,
    REQUEST_STATES,
    DocumentRequest,
    DocumentRequestAnswer,
    DocumentRequestExtension,
)
from tracker.models.evidence import REVIEW_STATES, VISIBILITIES, Evidence, EvidenceReview
from tracker.models.files import DocumentFile
from tracker.models.indicators import (
    DIRECTIONS,
    FREQUENCIES,
    INDICATOR_UNITS,
    CatalogIndicator,
    Indicator,
    IndicatorValue,
)
from tracker.models.monitoring import (
    ASSESSMENT_STATUSES,
    PERIOD_STATES,
    Finding,
    FindingAssessment,
    FindingResponse,
    Methodology,
    MonitoringPeriod,
    PlanItem,
    SustainmentOrder,
)
from tracker.models.notifications import (
    DELIVERY_MODES,
    OUTBOX_STATES,
    Notification,
    NotificationPreference,
    OutboxMessage,
    RequirementFollow,
)
from tracker.models.policies import (
    APPROVAL_KINDS,
    COMMENT_RESPONSES,
    COMMENT_STATES,
    DOCUMENT_KINDS,
    DOCUMENT_STATES,
    ROUND_OUTCOMES,
    CommentWindow,
    PolicyComment,
    PolicyDocument,
    PolicyVersion,
    ReviewRound,
    TrainingCount,
    TrainingPlan,
    TrainingRosterEntry,
)
from tracker.models.requirements import (
    OPEN_STATUSES,
    STATUSES,
    Comment,
    DeadlineChange,
    Requirement,
    StatusChange,
)
from tracker.models.users import (
    AGENCY_ROLES,
    ROLES,
    ApiToken,
    FormSubmission,
    LoginBlock,
    Membership,
    User,
    UserSession,
)

__all__ = [
    "AGENCY_ROLES", "APPROVAL_KINDS", "ASSESSMENT_KINDS", "ASSESSMENT_STATUSES", "CADENCES", "CADENCE_MONTHS",
    "CITATION_BASIS", "COMMENT_RESPONSES", "COMMENT_STATES", "DELIVERY_MODES", "DIRECTIONS", "DOCUMENT_KINDS",
    "DOCUMENT_STATES", "EXTENSION_STATES", "FREQUENCIES", "INDICATOR_UNITS", "INSTRUMENT_KINDS", "LEVEL_KINDS",
    "OCCURRENCE_STATES", "OPEN_STATUSES", "OUTBOX_STATES", "PERIOD_STATES", "RECOMMENDATION_STATES",
    "REQUEST_STATES", "RESPONSE_DECISIONS", "REVIEW_STATES", "ROLES", "ROUND_OUTCOMES", "SOURCE_KINDS", "STATUSES",
    "VISIBILITIES",
    "Agency", "ApiToken", "AuditCheckpoint", "AuditEvent", "Base", "CatalogIndicator", "Citation", "Comment",
    "CommentWindow",
    "CommitteeRecommendation", "CommitteeResponse", "ComplianceLevel", "ComplianceScale", "DeadlineChange",
    "DecreeSection", "DocumentFile", "DocumentRequest", "DocumentRequestAnswer", "DocumentRequestExtension",
    "Evidence", "EvidenceReview", "Finding", "FindingAssessment", "FindingResponse", "FormSubmission", "Indicator",
    "LoginBlock",
    "IndicatorValue", "Instrument", "Meeting", "Membership", "Methodology", "Module", "MonitoringPeriod",
    "Notification", "NotificationPreference", "Occurrence", "OutboxMessage", "PlanItem", "PolicyComment",
    "PolicyDocument", "PolicyVersion", "Recommendation", "Requirement", "RequirementFollow", "RequirementLink",
    "ResponsibleEntity", "ReviewRound", "SustainmentOrder", "Source", "StatusChange", "TrainingCount",
    "TrainingPlan", "TrainingRosterEntry", "User", "UserSession", "utcnow",
]
