"""The demo's own decree paragraphs (issue 12), imported through the paragraph import an officer uses: a CSV built
from `decree_paragraphs:` in seed/demo.yaml, checked whole and written in one go like any upload."""
import csv
import io

import sqlalchemy as sa

from tracker.extensions import db
from tracker.models import User
from tracker.services import imports

COLUMNS = ("paragraph", "title", "text", "module", "section", "entity", "deadline", "catalog")


def load(agency, data):
    spec = data.get("decree_paragraphs")
    if not spec:
        return []
    officer = db.session.execute(sa.select(User).where(User.email == spec["by"])).scalar_one()
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(COLUMNS)
    for row in spec["rows"]:
        writer.writerow([row.get(column, "") for column in COLUMNS])
    added, _updated, _unchanged = imports.import_paragraphs(
        agency, "harbor-city-settlement.csv", out.getvalue().encode(), actor=officer)
    return added
