"""Bulk import of an agency's own decree paragraphs."""
from flask import Blueprint, flash, redirect, render_template, url_for
from flask_login import current_user, login_required

from tracker.access import agency_or_404
from tracker.extensions import db
from tracker.forms.requirements import ImportForm
from tracker.services import imports
from tracker.services.errors import ValidationFailed

bp = Blueprint("imports", __name__)


@bp.route("/agencies/<slug>/import", methods=["GET", "POST"])
@login_required
def import_paragraphs(slug):
    agency = agency_or_404(slug, roles={"officer"})
    form = ImportForm()
    problems, filename = [], None
    if form.validate_on_submit():
        upload = form.file.data
        if not upload or not upload.filename:
            problems = ["Choose a CSV or XLSX file."]
        else:
            filename = upload.filename
            try:
                # One byte past the limit is enough to refuse; the rest of the upload is never read.
                data = upload.stream.read(imports.MAX_BYTES + 1)
                added, updated, unchanged = imports.import_paragraphs(agency, filename, data, actor=current_user)
                db.session.commit()
                flash(f"Imported {filename}: {len(added)} added, {len(updated)} updated, {unchanged} unchanged.",
                      "success")
                return redirect(url_for("board.board", slug=slug), code=303)
            except imports.ImportFailed as exc:
                db.session.rollback()
                problems = exc.problems
            except ValidationFailed as exc:
                db.session.rollback()
                problems = list(exc.errors.values())
    status = 422 if problems else 200
    return render_template("board/import.html", agency=agency, form=form, problems=problems,
                           filename=filename, limits=imports), status
