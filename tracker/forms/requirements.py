"""Forms for requirement edits, comments, evidence and imports. Board rows render these by hand
with per-row ids; the classes parse and validate what comes back."""
from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from wtforms import DateField, HiddenField, RadioField, SelectField, StringField, SubmitField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional

from tracker.models import STATUSES, VISIBILITIES


class StatusForm(FlaskForm):
    status = SelectField("Status", choices=dict(STATUSES))
    note = TextAreaField("Note on this change", validators=[Optional(), Length(max=4000)],
                         description="Required when the status is Not applicable: say why.")
    row_version = HiddenField()
    submit = SubmitField("Save status")


class OwnerForm(FlaskForm):
    owner_id = SelectField("Owner", coerce=int, validate_choice=False)
    row_version = HiddenField()
    submit = SubmitField("Save owner")


class DueDateForm(FlaskForm):
    due_date = DateField("Due date", validators=[Optional()])
    reason = TextAreaField("Reason for the change", validators=[Optional(), Length(max=1000)],
                           description="Required when moving a date already set, "
                                       "e.g. the court order that extended it.")
    row_version = HiddenField()
    submit = SubmitField("Save due date")


class NotesForm(FlaskForm):
    notes = TextAreaField("Notes", validators=[Optional(), Length(max=20000)])
    row_version = HiddenField()
    submit = SubmitField("Save notes")


class CommentForm(FlaskForm):
    body = TextAreaField("Comment", validators=[DataRequired(message="Write a comment first."), Length(max=4000)])
    submit = SubmitField("Post comment")


class EvidenceForm(FlaskForm):
    kind = RadioField("Kind of evidence", choices={"file": "Upload a file", "link": "Link to a web page"},
                      default="file")
    file = FileField("File", description="PDF, Word, Excel, CSV, text, PNG or JPEG.")
    url = StringField("Link (http or https)", validators=[Optional(), Length(max=2000)])
    title = StringField("Title", validators=[DataRequired(message="Give the evidence a title."), Length(max=300)])
    description = TextAreaField("Description", validators=[Optional(), Length(max=4000)])
    period_start = DateField("Period covered: from", validators=[Optional()])
    period_end = DateField("Period covered: to", validators=[Optional()])
    visibility = RadioField("Visibility", choices=dict(VISIBILITIES), default="restricted",
                            description="Restricted files are seen by the agency and its monitors only; "
                                        "committee members see the title.")
    submit = SubmitField("Add evidence")


class ImportForm(FlaskForm):
    file = FileField("CSV or XLSX file")
    submit = SubmitField("Import paragraphs")


class RowForm(FlaskForm):
    """The board row's edit form: status, note, owner and due date with one Save."""
    status = SelectField("Status", choices=dict(STATUSES))
    note = StringField("Note", validators=[Optional(), Length(max=4000)])
    owner_id = SelectField("Owner", coerce=int, validate_choice=False)
    due_date = DateField("Due date", validators=[Optional()])
    reason = StringField("Reason for moving the due date", validators=[Optional(), Length(max=1000)])
    row_version = HiddenField()


class BulkForm(FlaskForm):
    """A change to the selected requirements; which one comes from the button pressed (`change`)."""
    change = HiddenField()
    owner_id = StringField("Owner")
    status = StringField("Status")
    note = StringField("Note", validators=[Optional(), Length(max=1000)])
    due_date = DateField("Due date", validators=[Optional()])
    reason = StringField("Reason", validators=[Optional(), Length(max=1000)])
    as_of = HiddenField()
