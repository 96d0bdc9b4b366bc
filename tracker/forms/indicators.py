"""Forms for outcome indicators: define or adopt one, edit it with its target, type a value, import a file."""
from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from wtforms import (
    BooleanField,
    DateField,
    SelectField,
    SelectMultipleField,
    StringField,
    SubmitField,
    TextAreaField,
)
from wtforms.validators import Length, Optional

from tracker.models import DIRECTIONS, FREQUENCIES, INDICATOR_UNITS


class IndicatorForm(FlaskForm):
    key = StringField("Short key", validators=[Optional(), Length(max=64)],
                      description="Lower-case letters, digits and hyphens, e.g. cit-on-scene; import files use it.")
    name = StringField("Name", validators=[Optional(), Length(max=300)])
    definition = TextAreaField("Definition", validators=[Optional(), Length(max=5000)],
                               description="What is counted, in words a community member understands.")
    numerator = StringField("Numerator", validators=[Optional(), Length(max=1000)],
                            description="For a share or a rate: what is counted on top.")
    denominator = StringField("Denominator", validators=[Optional(), Length(max=1000)],
                              description="For a share or a rate: what it is counted out of.")
    unit = SelectField("Unit", choices=dict(INDICATOR_UNITS), validate_choice=False)
    direction = SelectField("Which way is better", choices=dict(DIRECTIONS), validate_choice=False)
    frequency = SelectField("Values per", choices=dict(FREQUENCIES), validate_choice=False)
    target_value = StringField("Target", validators=[Optional(), Length(max=40)],
                               description="In the indicator's unit, e.g. 75 for 75 %. Leave empty for none.")
    target_date = DateField("Target date", validators=[Optional()], description="Optional, e.g. 2027-06-30.")
    requirement_ids = SelectMultipleField("Requirements it evidences", coerce=int, validate_choice=False,
                                          description="Hold Ctrl (or ⌘) to choose more than one.")
    submit = SubmitField("Save indicator")


class AdoptForm(FlaskForm):
    catalog_key = SelectField("Suggested indicator", validate_choice=False)
    frequency = SelectField("Values per", choices=dict(FREQUENCIES), validate_choice=False)
    submit = SubmitField("Adopt indicator")


class ValueForm(FlaskForm):
    period = StringField("Period", validators=[Optional(), Length(max=20)])
    breakdown = StringField("Breakdown (optional)", validators=[Optional(), Length(max=100)],
                            description="Empty for the overall figure; or a part, e.g. District 3 or Night shift.")
    value = StringField("Value", validators=[Optional(), Length(max=40)],
                        description="Or leave empty and give the numerator and denominator.")
    numerator_value = StringField("Numerator", validators=[Optional(), Length(max=40)])
    denominator_value = StringField("Denominator", validators=[Optional(), Length(max=40)])
    note = StringField("Note (optional)", validators=[Optional(), Length(max=2000)])
    submit = SubmitField("Save value")


class ImportForm(FlaskForm):
    file = FileField("CSV or Excel (.xlsx) file")
    submit = SubmitField("Check and import")


class PublishForm(FlaskForm):
    public = BooleanField("Show this indicator on the public page")
    submit = SubmitField("Save")
