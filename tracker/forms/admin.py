from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    DateField,
    EmailField,
    IntegerField,
    SelectField,
    SelectMultipleField,
    StringField,
    SubmitField,
    widgets,
)
from wtforms.validators import DataRequired, Length, NumberRange, Optional


class AgencyForm(FlaskForm):
    name = StringField("Agency name", validators=[DataRequired(), Length(max=200)])
    slug = StringField("Short name for web addresses (slug)", validators=[DataRequired(), Length(max=64)],
                       description="Lowercase letters, digits and hyphens, e.g. metro-city-pd.")
    state = StringField("State", validators=[DataRequired(), Length(min=2, max=2)],
                        description="Two-letter code, e.g. OH.")
    source_id = SelectField("Governing decree or agreement", coerce=int, validators=[Optional()])
    effective_date = DateField("Effective date", validators=[Optional()],
                               description="Date the court entered the decree. Due dates count from it.")
    scale_id = SelectField("Compliance scale", coerce=int, validators=[DataRequired()])
    sustainment_months = IntegerField("Sustainment period (months)", validators=[Optional(), NumberRange(1, 240)],
                                      description="How long a requirement must stay in full compliance.")
    public_enabled = BooleanField("Publish the aggregate transparency page")
    submit = SubmitField("Save agency")


class MultiCheckboxField(SelectMultipleField):
    widget = widgets.ListWidget(prefix_label=False)
    option_widget = widgets.CheckboxInput()


class AdoptForm(FlaskForm):
    modules = MultiCheckboxField("Modules to adopt", validators=[DataRequired()])
    submit = SubmitField("Adopt selected modules")


class UserForm(FlaskForm):
    email = EmailField("Email address", validators=[DataRequired(), Length(max=254)])
    name = StringField("Full name", validators=[Optional(), Length(max=200)])
    role = SelectField("Role", choices={"admin": "Administrator", "officer": "Compliance officer",
                                        "monitor": "Monitor", "committee": "Advisory-committee member"})
    agency_id = SelectField("Agency", coerce=int, validators=[Optional()],
                            description="Required for officers, monitors and committee members.")
    submit = SubmitField("Create user")


class MembershipForm(FlaskForm):
    agency_id = SelectField("Agency", coerce=int)
    role = SelectField("Role", choices={"officer": "Compliance officer", "monitor": "Monitor",
                                        "committee": "Advisory-committee member"})
    submit = SubmitField("Add membership")
