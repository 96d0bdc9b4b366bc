"""Blueprints, one per feature."""


def register_blueprints(app):
    from tracker.views import (
        admin,
        agencies,
        api,
        auth,
        board,
        catalog,
        dashboard,
        errors,
        evidence,
        exports,
        imports,
        monitoring,
        public,
        reports,
        reviews,
        rollup,
    )

    for module in (auth, catalog, api, agencies, board, evidence, imports, reviews, monitoring, dashboard, rollup,
                   exports, reports, public, admin):
        app.register_blueprint(module.bp)
    from tracker.views import checkpoints  # issue 19: signed audit checkpoints

    app.register_blueprint(checkpoints.bp)
    from tracker.views import document_requests, plans  # issue 13: monitoring plans, document requests

    for module in (plans, document_requests):
        app.register_blueprint(module.bp)
    from tracker.views import committee, indicators  # issue 14: committee meetings and recommendations, indicators

    app.register_blueprint(committee.bp)
    app.register_blueprint(indicators.bp)
    from tracker.views import policies, public_comments, status_report  # issue 16: policies, status report

    for module in (policies, public_comments, status_report):
        app.register_blueprint(module.bp)
    from tracker.views import decree  # issue 12: decree structure, occurrences, crosswalk

    app.register_blueprint(decree.bp)
    from tracker.views import notifications  # issue 15: e-mail preferences, follows, unsubscribe, outbox

    app.register_blueprint(notifications.bp)
    app.register_blueprint(notifications.admin_bp)
    errors.register(app)
