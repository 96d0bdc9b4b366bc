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
        imports,
        monitoring,
        public,
        reviews,
    )

    for module in (auth, catalog, api, agencies, board, evidence, imports, reviews, monitoring, dashboard, public,
                   admin):
        app.register_blueprint(module.bp)
    errors.register(app)
