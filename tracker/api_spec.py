"""OpenAPI 3.1 description of the read API. A test validates real responses against these schemas."""

NULLABLE_STRING = {"type": ["string", "null"]}
DATE = {"type": "string", "format": "date"}
NULLABLE_DATE = {"type": ["string", "null"], "format": "date"}

CITATION = {
    "type": "object",
    "required": ["source", "source_title", "paragraphs", "basis", "note"],
    "properties": {
        "source": {"type": "string"}, "source_title": {"type": "string"}, "paragraphs": {"type": "string"},
        "basis": {"enum": ["primary_text", "secondary_description", "unverified"]}, "note": NULLABLE_STRING,
    },
    "additionalProperties": False,
}
RECOMMENDATION = {
    "type": "object",
    "required": ["id", "title", "summary", "typical_deadline", "cadence", "evidence_examples", "citations"],
    "properties": {
        "id": {"type": "string"}, "title": {"type": "string"}, "summary": {"type": "string"},
        "typical_deadline": NULLABLE_STRING, "cadence": NULLABLE_STRING,
        "evidence_examples": {"type": "array", "items": {"type": "string"}},
        "citations": {"type": "array", "items": {"$ref": "#/components/schemas/Citation"}},
    },
    "additionalProperties": False,
}
CATALOG = {
    "type": "object", "required": ["modules"],
    "properties": {"modules": {"type": "array", "items": {
        "type": "object", "required": ["key", "name", "description", "recommendations"],
        "properties": {"key": {"type": "string"}, "name": {"type": "string"}, "description": {"type": "string"},
                       "recommendations": {"type": "array", "items": {"$ref": "#/components/schemas/Recommendation"}}},
        "additionalProperties": False}}},
    "additionalProperties": False,
}
AGENCY = {
    "type": "object",
    "required": ["slug", "name", "state", "effective_date", "compliance_scale", "role", "requirements_url",
                 "findings_url"],
    "properties": {
        "slug": {"type": "string"}, "name": {"type": "string"}, "state": {"type": "string"},
        "effective_date": NULLABLE_DATE, "compliance_scale": {"type": "string"},
        "role": {"enum": ["admin", "officer", "monitor", "committee"]},
        "requirements_url": {"type": "string"}, "findings_url": {"type": "string"},
    },
    "additionalProperties": False,
}
REQUIREMENT = {
    "type": "object",
    "required": ["id", "code", "title", "module", "status", "owner", "due_date", "terminated_on", "citation",
                 "citations", "row_version", "text", "instrument", "section", "entity", "deadline_text",
                 "recurring", "implements"],
    "properties": {
        "id": {"type": "integer"}, "code": {"type": "string"}, "title": {"type": "string"},
        "module": {"type": "string"},
        "status": {"enum": ["not_started", "in_progress", "implemented", "not_applicable"]},
        "owner": {"oneOf": [{"type": "null"}, {"type": "object", "required": ["name", "email"],
                                                "properties": {"name": {"type": "string"},
                                                               "email": {"type": "string"}},
                                                "additionalProperties": False}]},
        "due_date": NULLABLE_DATE, "terminated_on": NULLABLE_DATE, "citation": {"type": "string"},
        "citations": {"type": "array", "items": {"$ref": "#/components/schemas/Citation"}},
        "row_version": {"type": "integer"},
        # Issue 12: the decree's own text and structure; due_date is a recurring duty's next due date.
        "text": {"type": "string", "description": "The paragraph's text, line breaks kept."},
        "instrument": {"type": "string", "description": "Short name of the decree, agreement or order."},
        "section": {"type": ["string", "null"]}, "entity": {"type": ["string", "null"]},
        "deadline_text": {"type": "string", "description": "The deadline as the decree words it."},
        "recurring": {"oneOf": [{"type": "null"}, {
            "type": "object", "required": ["cadence_months", "cadence", "cadence_text", "next_due_date"],
            "properties": {"cadence_months": {"type": "integer"}, "cadence": {"type": "string"},
                           "cadence_text": {"type": "string"}, "next_due_date": NULLABLE_DATE},
            "additionalProperties": False}]},
        "implements": {"type": "array", "items": {"type": "string"},
                       "description": "Ids of the catalog recommendations this paragraph implements."},
    },
    "additionalProperties": False,
}
FINDING = {
    "type": "object",
    "required": ["requirement", "period", "period_start", "period_end", "period_state", "level", "level_label",
                 "level_kind", "narrative", "recorded_at", "correction_reason"],
    "properties": {
        "requirement": {"type": "string"}, "period": {"type": "string"}, "period_start": DATE, "period_end": DATE,
        "period_state": {"enum": ["open", "shared", "filed"]}, "level": {"type": "string"},
        "level_label": {"type": "string"},
        "level_kind": {"enum": ["unassessed", "deferred", "rating"]}, "narrative": {"type": "string"},
        "recorded_at": {"type": "string", "format": "date-time"}, "correction_reason": NULLABLE_STRING,
    },
    "additionalProperties": False,
}

NUMBER_OR_NULL = {"type": ["number", "null"]}
INDICATOR = {  # issue 14
    "type": "object",
    "required": ["key", "name", "definition", "numerator", "denominator", "unit", "direction", "frequency",
                 "public", "target", "target_date", "latest", "change", "meets_target", "values"],
    "properties": {
        "key": {"type": "string"}, "name": {"type": "string"}, "definition": {"type": "string"},
        "numerator": {"type": "string"}, "denominator": {"type": "string"},
        "unit": {"enum": ["percent", "count", "minutes", "rate"]}, "direction": {"enum": ["up", "down"]},
        "frequency": {"enum": ["month", "quarter"]}, "public": {"type": "boolean"},
        "target": NUMBER_OR_NULL, "target_date": NULLABLE_DATE,
        "latest": {"oneOf": [{"type": "null"}, {"$ref": "#/components/schemas/IndicatorValue"}]},
        "change": NUMBER_OR_NULL, "meets_target": {"type": ["boolean", "null"]},
        "values": {"type": "array", "items": {"$ref": "#/components/schemas/IndicatorValue"}},
    },
    "additionalProperties": False,
}
INDICATOR_VALUE = {
    "type": "object", "required": ["period", "value"],
    "properties": {"period": {"type": "string", "description": "2025-Q1 (quarter) or 2025-03 (month)"},
                   "value": {"type": "number"}},
    "additionalProperties": False,
}


def _page_of(ref):
    return {
        "type": "object", "required": ["items", "page", "per_page", "total", "pages", "next"],
        "properties": {"items": {"type": "array", "items": {"$ref": ref}}, "page": {"type": "integer"},
                       "per_page": {"type": "integer"}, "total": {"type": "integer"}, "pages": {"type": "integer"},
                       "next": NULLABLE_STRING},
        "additionalProperties": False,
    }


ERROR = {"type": "object", "required": ["error", "message"],
         "properties": {"error": {"type": "string"}, "message": {"type": "string"}}}
PAGING = [
    {"name": "page", "in": "query", "schema": {"type": "integer", "minimum": 1, "default": 1}},
    {"name": "per_page", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 50}},
]
SLUG = {"name": "slug", "in": "path", "required": True, "schema": {"type": "string"}}


def _json(ref, description):
    return {"description": description, "content": {"application/json": {"schema": {"$ref": ref}}}}


ERRORS = {"400": _json("#/components/schemas/Error", "page or per_page is not a whole number in range"),
          "401": _json("#/components/schemas/Error", "Not signed in and no token sent"),
          "404": _json("#/components/schemas/Error", "Unknown or revoked token, or outside your agencies")}


def openapi_document():
    return {
        "openapi": "3.1.0",
        "info": {"title": "Consent-decree tracker read API", "version": "1",
                 "description": "Read-only access with the caller's own scope. Authenticate with the browser "
                                "session or `Authorization: Bearer <token>` (create tokens on your account page)."},
        "servers": [{"url": "/api/v1"}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"},
                                "session": {"type": "apiKey", "in": "cookie", "name": "__Host-session"}},
            "schemas": {"Citation": CITATION, "Recommendation": RECOMMENDATION, "Catalog": CATALOG,
                        "Agency": AGENCY, "AgencyList": {"type": "object", "required": ["items"],
                                                         "properties": {"items": {"type": "array", "items": {
                                                             "$ref": "#/components/schemas/Agency"}}}},
                        "Requirement": REQUIREMENT, "Finding": FINDING,
                        "RequirementPage": _page_of("#/components/schemas/Requirement"),
                        "FindingPage": _page_of("#/components/schemas/Finding"), "Error": ERROR,
                        "Indicator": INDICATOR, "IndicatorValue": INDICATOR_VALUE,
                        "IndicatorList": {"type": "object", "required": ["items"], "properties": {"items": {
                            "type": "array", "items": {"$ref": "#/components/schemas/Indicator"}}}}},
        },
        "security": [{"bearer": []}, {"session": []}],
        "paths": {
            "/catalog": {"get": {"summary": "The recommendation catalog", "security": [],
                                 "responses": {"200": _json("#/components/schemas/Catalog", "Modules")}}},
            "/agencies": {"get": {"summary": "Agencies you can see",
                                  "responses": {"200": _json("#/components/schemas/AgencyList", "Agencies"),
                                                "401": ERRORS["401"], "404": ERRORS["404"]}}},
            "/agencies/{slug}/requirements": {"get": {
                "summary": "An agency's requirements", "parameters": [SLUG, *PAGING],
                "responses": {"200": _json("#/components/schemas/RequirementPage", "A page"), **ERRORS}}},
            "/agencies/{slug}/findings": {"get": {
                "summary": "Current findings by monitoring period", "parameters": [SLUG, *PAGING],
                "responses": {"200": _json("#/components/schemas/FindingPage", "A page"), **ERRORS}}},
            "/agencies/{slug}/indicators": {"get": {
                "summary": "An agency's outcome indicators with targets and their overall values by period",
                "parameters": [SLUG],
                "responses": {"200": _json("#/components/schemas/IndicatorList", "Indicators"),
                              "401": ERRORS["401"], "404": ERRORS["404"]}}},
        },
    }
