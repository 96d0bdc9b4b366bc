"""Blueprints, one per feature."""


def register_blueprints(app):
    from tracker.views import admin, agencies, api, auth, board, catalog, errors, evidence, imports, monitoring, reviews

    for module in (auth, catalog, api, agencies, board, evidence, imports, reviews, monitoring, admin):
        app.register_blueprint(module.bp)
    errors.register(app)
