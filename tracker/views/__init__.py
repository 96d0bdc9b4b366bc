"""Blueprints, one per feature."""


def register_blueprints(app):
    from tracker.views import admin, agencies, api, auth, catalog, errors

    for module in (auth, catalog, api, agencies, admin):
        app.register_blueprint(module.bp)
    errors.register(app)
