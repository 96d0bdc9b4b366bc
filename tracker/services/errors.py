"""Errors raised by services and shown to users."""


class ValidationFailed(Exception):
    """Input was refused. `errors` maps a field name to a message; nothing was written."""

    def __init__(self, errors):
        self.errors = dict(errors)
        super().__init__("; ".join(f"{k}: {v}" for k, v in self.errors.items()))
