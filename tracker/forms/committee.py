"""Forms for committee meetings, recommendations and the agency's responses."""
from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from wtforms import (
    BooleanField,
    DateTimeLocalField,
    HiddenField,
    IntegerField,
    RadioField,
    SelectField,
    SelectMultipleField,
    StringField,
    SubmitField,
    TextAreaField,
)
from wtforms.validators import DataRequired, Length, Optional

from tracker.models import RESPONSE_DECISIONS

MARKDOWN_HINT = ("Plain text; Markdown works: # heading, *emphasis*, - lists, [text](https://…) links. "
                 "HTML is shown as text.")


class MeetingForm(FlaskForm):
    title = StringField("Title", validators=[DataRequired(message="The title is required."), Length(max=300)])
    starts_at = DateTimeLocalField("Date and time (local)", format=["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"],
                                   validators=[DataRequired(message="Enter the date and time of the meeting.")])
    location = StringField("Place", validators=[Optional(), Length(max=300)],
                           description="A room and address, if the meeting is held in person.")
    link = StringField("Online meeting link", validators=[Optional(), Length(max=2000)],
                       description="http:// or https:// only.")
    agenda = TextAreaField("Agenda", validators=[Optional(), Length(max=50000)], description=MARKDOWN_HINT)
    minutes = TextAreaField("Minutes", validators=[Optional(), Length(max=50000)], description=MARKDOWN_HINT)
    attendee_ids = SelectMultipleField("Members present", coerce=int, validate_choice=False)
    guests = TextAreaField("Other people present", validators=[Optional(), Length(max=4000)],
                           description="Names of people without an account here, one per line.")
    submit = SubmitField("Save meeting")


class DocumentForm(FlaskForm):
    file = FileField("Document", description="PDF, Word, Excel, CSV, text, PNG or JPEG.")
    submit = SubmitField("Attach document")


class MeetingPublishForm(FlaskForm):
    agenda_public = BooleanField("Show the agenda on the public page")
    minutes_public = BooleanField("Show the minutes on the public page")
    submit = SubmitField("Save what is public")


class RecommendationForm(FlaskForm):
    title = StringField("Title", validators=[DataRequired(message="The title is required."), Length(max=300)])
    body = TextAreaField("Recommendation",
                         validators=[DataRequired(message="The recommendation is required."), Length(max=20000)],
                         description="What the committee recommends the department do.")
    rationale = TextAreaField("Rationale", validators=[Optional(), Length(max=20000)],
                              description="Why: what the committee saw, heard or read.")
    meeting_id = SelectField("Adopted at meeting", coerce=int, validate_choice=False)
    requirement_ids = SelectMultipleField("Requirements concerned", coerce=int, validate_choice=False,
                                          description="Hold Ctrl (or ⌘) to choose more than one.")
    module_ids = SelectMultipleField("Modules concerned", coerce=int, validate_choice=False)
    row_version = HiddenField()
    submit = SubmitField("Save draft")


class VersionForm(FlaskForm):
    row_version = HiddenField()
    submit = SubmitField("Submit to the department")


class ResponseForm(FlaskForm):
    decision = RadioField("Decision", choices=dict(RESPONSE_DECISIONS), validate_choice=False)
    reasons = TextAreaField("Reasons", validators=[Optional(), Length(max=20000)],
                            description="The department's written reasons.")
    steps = TextAreaField("Implementation steps", validators=[Optional(), Length(max=20000)],
                          description="Required when accepted in whole or in part: what will be done, by whom, when.")
    requirement_ids = SelectMultipleField("Requirements the steps implement", coerce=int, validate_choice=False,
                                          description="Hold Ctrl (or ⌘) to choose more than one.")
    row_version = HiddenField()
    submit = SubmitField("Save the department's answer")


class RecommendationPublishForm(FlaskForm):
    public = BooleanField("Publish this recommendation and the department's answer on the public page")
    submit = SubmitField("Save")


class SettingsForm(FlaskForm):
    response_days = IntegerField("Days the department has to answer a recommendation",
                                 validators=[DataRequired(message="Enter a number of days between 1 and 365.")],
                                 description="Counted from submission. Recommendations already submitted keep "
                                             "their due date.")
    chair_id = SelectField("Committee chair", coerce=int, validate_choice=False,
                           description="The chair schedules meetings and may change or submit any draft.")
    submit = SubmitField("Save committee settings")
