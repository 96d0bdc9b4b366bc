"""Signed audit checkpoints as small JSON files a monitor can keep (issue 19)."""
import json

from flask import Blueprint, Response, abort
from flask_login import login_required

from tracker.extensions import db
from tracker.models import AuditCheckpoint
from tracker.services import checkpoints

bp = Blueprint("checkpoints", __name__)


@bp.get("/audit/checkpoints/<int:checkpoint_id>.json")
@login_required
def download(checkpoint_id):
    """Any signed-in user: a checkpoint names only an event number and hashes, no agency's data."""
    checkpoint = db.session.get(AuditCheckpoint, checkpoint_id)
    if checkpoint is None:
        abort(404)
    doc = checkpoints.document(checkpoint)
    response = Response(json.dumps(doc, indent=2, sort_keys=True) + "\n", mimetype="application/json")
    response.headers["Content-Disposition"] = f'attachment; filename="{checkpoints.file_name(doc)}"'
    return response
