"""Issue 19 §4: the read API fuzzed against its own OpenAPI document with schemathesis (property-based).

Every operation of /api/v1/openapi.json is called with generated path and query values (slugs of any shape,
page and per_page of any size and sign, extra parameters), as the holder of an API token, in-process. Every
answer must be no server error, a status code the document lists, a JSON body of the documented content type,
and a body matching the documented schema. A failure prints the request that reproduces it.
"""
import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from tracker.api_spec import openapi_document

pytestmark = pytest.mark.security
# The document the app serves at /api/v1/openapi.json (a test in test_public_api.py checks they are the same).
# Loaded from the function, not through schemathesis' fixture loader, which needs pytest internals pytest 9
# no longer has.
schema = schemathesis.openapi.from_dict(openapi_document())


@schema.parametrize()
@settings(max_examples=40, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
def test_every_operation_answers_as_documented_whatever_it_is_sent(case, app, world):
    response = case.call(app=app, headers={"Authorization": f"Bearer {world['api_secret']}"})
    # ignored_auth sends a made-up session cookie beside our valid token and expects a refusal; the document
    # says either scheme is enough (security: bearer OR session), so a valid token rightly wins.
    case.validate_response(response, excluded_checks=[schemathesis.checks.ignored_auth])
