"""Forms for the decree's structure (instruments, sections, entities), recurring duties and the crosswalk.

One page shows a form per instrument, section and entity; each has its own prefix (`i3-`, `s7-`, `new-`), so
ids stay unique, and an unprefixed hidden field says which row the posted form edits.
"""
from flask_wtf import FlaskForm
from wtforms import DateField, IntegerField, SelectField, StringField, SubmitField, TextAreaField
from wtforms.validators import DataRequired, Length, NumberRange, Optional

from tracker.models import INSTRUMENT_KINDS


class InstrumentForm(FlaskForm):
    short_name = StringField("Short name", validators=[DataRequired(), Length(max=100)],
                             description="How imports and pages name it, e.g. Consent decree or MOA 2023.")
    title = StringField("Full title", validators=[Optional(), Length(max=500)])
    kind = SelectField("Kind", choices=dict(INSTRUMENT_KINDS))
    court = StringField("Court", validators=[Optional(), Length(max=300)])
    case_number = StringField("Case number", validators=[Optional(), Length(max=100)])
    approved_date = DateField("Approved by the court", validators=[Optional()])
    effective_date = DateField("Effective date", validators=[Optional()],
                               description="Relative deadlines of its paragraphs count from this date.")
    scale_id = SelectField("Compliance scale", coerce=int, validators=[DataRequired()])
    sustainment_months = IntegerField("Sustainment period (months)", validators=[Optional(), NumberRange(1, 240)])
    submit = SubmitField("Save instrument")

    def values(self):
        return {name: self[name].data for name in ("short_name", "title", "kind", "court", "case_number",
                                                   "approved_date", "effective_date", "scale_id",
                                                   "sustainment_months")}


class SectionForm(FlaskForm):
    label = StringField("Section heading", validators=[DataRequired(), Length(max=300)],
                        description="As the decree numbers and names it, e.g. III.C Crisis Intervention.")
    submit = SubmitField("Save section")


class EntityForm(FlaskForm):
    name = StringField("Entity", validators=[DataRequired(), Length(max=200)],
                       description="Who the paragraphs bind, e.g. Office of Emergency Communications.")
    submit = SubmitField("Save entity")


class OccurrenceForm(FlaskForm):
    # Ids of their own: the requirement page also has the status form's "note".
    completed_on = DateField("Completed on", id="occurrence-completed-on",
                             validators=[DataRequired(message="Enter the date it was completed.")])
    note = TextAreaField("Note on this occurrence", id="occurrence-note", validators=[Optional(), Length(max=4000)],
                         description="What was delivered, e.g. the report's docket number.")
    submit = SubmitField("Mark completed")


class LinkForm(FlaskForm):
    code = StringField("Catalog recommendation id", id="link-code", validators=[DataRequired(), Length(max=32)],
                       description="e.g. CIT-004")
    submit = SubmitField("Link")
