"""T18: the security headers on every kind of response, including errors raised outside our views
(413 from Werkzeug, 429 from Flask-Limiter, 500 from an unexpected exception), fragments and downloads."""
import io

import pytest

from tests.conftest import Auth, csrf_from
from tests.security.conftest import signed_in

pytestmark = pytest.mark.security

PAGE_CSP_PARTS = ["default-src 'self'", "script-src 'self'", "style-src 'self'", "object-src 'none'",
                  "base-uri 'none'", "frame-ancestors 'none'", "form-action 'self'"]
DOWNLOAD_CSP_PARTS = ["sandbox", "default-src 'none'"]


def header_problems(response, *, static=False, download=False):
    """Every way this response falls short of SECURITY-PLAN section 2 'Headers'."""
    problems = []
    h = response.headers
    csp = h.get("Content-Security-Policy", "")
    if "unsafe-inline" in csp or "unsafe-eval" in csp or "unsafe-hashes" in csp:
        problems.append(f"CSP allows unsafe sources: {csp}")
    is_download_csp = all(part in csp for part in DOWNLOAD_CSP_PARTS)
    if not (all(part in csp for part in PAGE_CSP_PARTS) or (download and is_download_csp)):
        problems.append(f"CSP missing or incomplete: {csp!r}")
    if h.get("X-Content-Type-Options") != "nosniff":
        problems.append(f"X-Content-Type-Options={h.get('X-Content-Type-Options')!r}")
    if h.get("Referrer-Policy") != "strict-origin-when-cross-origin":
        problems.append(f"Referrer-Policy={h.get('Referrer-Policy')!r}")
    hsts = h.get("Strict-Transport-Security", "")
    if not (hsts.startswith("max-age=") and int(hsts.split(";")[0].split("=")[1]) >= 31536000
            and "includeSubDomains" in hsts):
        problems.append(f"Strict-Transport-Security={hsts!r}")
    if "frame-ancestors 'none'" not in csp and h.get("X-Frame-Options") != "DENY" and not is_download_csp:
        problems.append("framing not forbidden")
    if not static:
        if h.get("Cache-Control") != "no-store":
            problems.append(f"Cache-Control={h.get('Cache-Control')!r}")
        if response.mimetype == "text/html":
            vary = ",".join(h.get_all("Vary"))
            if "HX-Request" not in vary:
                problems.append(f"Vary={vary!r} (pages differ for htmx)")
    if download:
        if not h.get("Content-Disposition", "").startswith("attachment"):
            problems.append(f"Content-Disposition={h.get('Content-Disposition')!r}")
    return problems


def _check(results, name, response, expected_status, **kind):
    status = response.status_code
    problems = header_problems(response, **kind)
    if status != expected_status:
        problems.insert(0, f"status {status}, expected {expected_status}")
    response.close()
    if problems:
        results.append(f"{name}: " + "; ".join(problems))


def test_headers_on_every_response_type(app, db, world, make_app):
    results = []
    req = world["req"]
    base = f"/agencies/agency-a/requirements/{req.id}"
    htmx = {"HX-Request": "true"}
    anonymous = app.test_client()
    officer = signed_in(app, "officer@example.test")
    committee = signed_in(app, "committee@example.test")
    o = officer.client

    # Pages and fragments.
    _check(results, "sign-in page", anonymous.get("/login"), 200)
    _check(results, "catalog page", anonymous.get("/catalog/"), 200)
    _check(results, "public page", anonymous.get("/public/agency-a"), 200)
    _check(results, "board page", o.get("/agencies/agency-a"), 200)
    _check(results, "requirement page", o.get(base), 200)
    _check(results, "HEAD of a page", o.head(base), 200)
    _check(results, "board fragment", o.get("/agencies/agency-a", headers={**htmx, "HX-Target": "board"}), 200)
    _check(results, "row fragment", o.get(f"{base}/row", headers=htmx), 200)
    _check(results, "row fragment (edit)", o.get(f"{base}/row?edit=1", headers=htmx), 200)
    _check(results, "dashboard fragment", o.get("/agencies/agency-a/dashboard",
                                                headers={**htmx, "HX-Target": "dashboard-body"}), 200)
    _check(results, "period report", o.get(f"/agencies/agency-a/periods/{world['closed'].id}/report"), 200)
    _check(results, "health check", anonymous.get("/healthz"), 200)
    _check(results, "OPTIONS", o.options(base), 200)

    # Redirects and htmx answers to writes.
    _check(results, "302 to sign-in", anonymous.get(base), 302)
    _check(results, "401 HX-Redirect", anonymous.get(f"{base}/row", headers=htmx), 401)
    _check(results, "303 after a write", officer.post(f"{base}/notes", {"notes": "n", "row_version": 1}), 303)
    _check(results, "htmx row after a write",
           officer.post(f"{base}/status", {"status": "in_progress", "row_version": 2}, headers=htmx), 200)
    _check(results, "409 conflict page", officer.post(f"{base}/status", {"status": "implemented",
                                                                        "row_version": 1}), 409)
    _check(results, "409 conflict row", officer.post(f"{base}/status", {"status": "implemented", "row_version": 1},
                                                     headers=htmx), 409)
    _check(results, "422 page", officer.post(f"{base}/comments", {"body": ""}), 422)

    # Errors.
    _check(results, "400 CSRF", o.post(f"{base}/notes", data={"notes": "x", "row_version": 3}), 400)
    _check(results, "400 CSRF htmx", o.post(f"{base}/notes", data={"notes": "x", "row_version": 3}, headers=htmx),
           400)
    _check(results, "403 role", committee.post(f"{base}/notes", {"notes": "hi", "row_version": 3}), 403)
    _check(results, "404 page", o.get("/no/such/page"), 404)
    _check(results, "404 fragment", o.get("/agencies/agency-b", headers=htmx), 404)
    _check(results, "404 API", o.get("/api/v1/agencies/agency-b/requirements"), 404)
    _check(results, "405", anonymous.post("/catalog/"), 405)
    _check(results, "405 TRACE", anonymous.open("/", method="TRACE"), 405)

    # Downloads, exports, feeds, API.
    _check(results, "evidence download", o.get(f"/agencies/agency-a/evidence/{world['file'].id}/download"), 200,
           download=True)
    _check(results, "CSV export", o.get("/agencies/agency-a/export.csv"), 200, download=True)
    _check(results, "XLSX export", o.get("/agencies/agency-a/export.xlsx"), 200, download=True)
    _check(results, "evidence package", o.get(f"/agencies/agency-a/periods/{world['closed'].id}/evidence-package.zip"),
           200, download=True)
    _check(results, "calendar feed", anonymous.get(f"/calendar/{world['cal_secret']}.ics"), 200)
    _check(results, "API JSON (session)", o.get("/api/v1/agencies"), 200)
    _check(results, "API JSON (token)", anonymous.get("/api/v1/agencies",
                                                      headers={"Authorization": f"Bearer {world['api_secret']}"}), 200)
    _check(results, "API 401", app.test_client().get("/api/v1/agencies"), 401)
    _check(results, "API 400", o.get("/api/v1/agencies/agency-a/requirements?page=x"), 400)
    _check(results, "OpenAPI document", anonymous.get("/api/v1/openapi.json"), 200)
    _check(results, "static file", anonymous.get("/static/app.css"), 200, static=True)

    # 413: a body over MAX_CONTENT_LENGTH, refused by Werkzeug before any view runs.
    small = make_app(MAX_CONTENT_LENGTH=1024)
    small_officer = signed_in(small, "officer@example.test")
    big = {"kind": "file", "title": "Big", "visibility": "restricted",
           "file": (io.BytesIO(b"%PDF-1.4\n" + b"0" * 4096), "big.pdf")}
    _check(results, "413 page", small_officer.post(f"{base}/evidence", big, content_type="multipart/form-data"), 413)
    big["file"] = (io.BytesIO(b"%PDF-1.4\n" + b"0" * 4096), "big.pdf")
    _check(results, "413 htmx", small_officer.post(f"{base}/evidence", big, content_type="multipart/form-data",
                                                   headers=htmx), 413)

    # 429: Flask-Limiter's refusal.
    limited = make_app(LOGIN_RATE_LIMIT="1 per minute").test_client()
    token = csrf_from(limited.get("/login").get_data(as_text=True))
    for _ in range(2):
        last = limited.post("/login", data={"email": "nobody@example.test", "password": "x" * 12,
                                            "csrf_token": token})
    _check(results, "429", last, 429)

    # 500: an unexpected exception, as a page, a fragment and from the API.
    failing = make_app(PROPAGATE_EXCEPTIONS=False)

    @failing.get("/boom")
    def boom():
        raise RuntimeError("internal detail")

    @failing.get("/api/v1/boom")
    def api_boom():
        raise RuntimeError("internal detail")

    failing_client = failing.test_client()
    _check(results, "500 page", failing_client.get("/boom"), 500)
    _check(results, "500 fragment", failing_client.get("/boom", headers=htmx), 500)
    _check(results, "500 API", failing_client.get("/api/v1/boom"), 500)

    assert not results, "\n".join(results)


def test_error_answers_keep_internals_out(make_app, app, world):
    """413, 429 and 500 answers carry the generic message, never a traceback or a framework page."""
    failing = make_app(PROPAGATE_EXCEPTIONS=False)

    @failing.get("/boom")
    def boom():
        raise RuntimeError("internal detail 1f2e")

    for headers in ({}, {"HX-Request": "true"}):
        body = failing.test_client().get("/boom", headers=headers).get_data(as_text=True)
        assert "internal detail 1f2e" not in body and "Traceback" not in body and "RuntimeError" not in body
        assert "Reference:" in body or "request id" in body.lower() or "reference" in body.lower()
    limited = make_app(LOGIN_RATE_LIMIT="1 per minute").test_client()
    token = csrf_from(limited.get("/login").get_data(as_text=True))
    for _ in range(2):
        last = limited.post("/login", data={"email": "x@example.test", "password": "y" * 12, "csrf_token": token})
    assert last.status_code == 429
    assert "Too many" in last.get_data(as_text=True) and "flask_limiter" not in last.get_data(as_text=True)
    auth = Auth(make_app(MAX_CONTENT_LENGTH=1024).test_client())
    auth.login("officer@example.test")
    r = auth.post(f"/agencies/agency-a/requirements/{world['req'].id}/comments", {"body": "z" * 5000})
    assert r.status_code == 413
    assert "1 KB" in r.get_data(as_text=True)


def test_error_pages_under_static_are_not_cached(app, world):
    officer = signed_in(app, "officer@example.test")
    response = officer.client.get("/static/no-such.css")
    html = response.get_data(as_text=True)
    assert response.status_code == 404
    assert "Olive Officer" in html and "csrf" in html.lower()  # a private page, not a static file
    assert header_problems(response) == []
