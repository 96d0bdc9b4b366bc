"""FlaskForm classes, one module per feature, and how errors pass between a form and a service."""


def field_errors(form):
    """{field name: its messages joined} for the fields the form itself refused."""
    return {name: " ".join(field.errors) for name, field in form._fields.items() if field.errors}


def apply_errors(form, errors):
    """Show a service's {field: message} on the form: beside the named field, or above the form
    when no field has that name. A message a field already shows is not repeated."""
    for name, message in errors.items():
        field = form._fields.get(name)
        if field is None:
            form.form_errors.append(message)
        elif message not in field.errors:
            field.errors = [*field.errors, message]
