"""E-mail preferences, following a requirement, the one-click unsubscribe link, and the admin's outbox."""
from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from tracker.access import agency_or_404, get_scoped_or_404, require_admin
from tracker.extensions import csrf, db
from tracker.forms.auth import EmptyForm
from tracker.models import OUTBOX_STATES, OutboxMessage, Requirement
from tracker.services import notifications, outbox
from tracker.services.errors import ValidationFailed

bp = Blueprint("notifications", __name__)
admin_bp = Blueprint("outbox", __name__, url_prefix="/admin/outbox")


@bp.app_context_processor
def _helpers():
    def is_following(req):
        return current_user.is_authenticated and notifications.is_following(current_user, req)

    return {"is_following": is_following, "DELIVERY_MODES": notifications.DELIVERY_MODES}


@bp.post("/account/notifications")
@login_required
def preferences():
    if not EmptyForm().validate_on_submit():
        abort(400)
    try:
        changed = notifications.set_preferences(current_user, request.form, actor=current_user)
        db.session.commit()
    except ValidationFailed as exc:
        db.session.rollback()
        flash("E-mail settings not saved: " + " ".join(exc.errors.values()), "error")
        return redirect(url_for("auth.account") + "#notifications", code=303)
    flash(f"E-mail settings saved ({len(changed)} changed)." if changed else "E-mail settings unchanged.", "success")
    return redirect(url_for("auth.account") + "#notifications", code=303)


@bp.post("/agencies/<slug>/requirements/<int:req_id>/follow")
@login_required
def follow(slug, req_id):
    agency = agency_or_404(slug)
    req = get_scoped_or_404(Requirement, req_id, agency)
    if not EmptyForm().validate_on_submit():
        abort(400)
    wanted = request.form.get("follow") == "1"
    notifications.set_follow(current_user, req, wanted, actor=current_user)
    db.session.commit()
    flash(f"You follow {req.code}: its comments and deadlines reach you by e-mail, as your settings say."
          if wanted else f"You no longer follow {req.code}.", "success")
    return redirect(url_for("board.requirement", slug=agency.slug, req_id=req.id), code=303)


@bp.route("/unsubscribe/<token>", methods=["GET", "POST"])
@csrf.exempt  # RFC 8058 one-click: the mail program POSTs without cookies; the signed token is the credential
def unsubscribe(token):
    found = notifications.read_unsubscribe_token(token)
    if found is None:
        return render_template("notifications/unsubscribe.html", user=None, labels=[]), 404
    user, categories = found
    labels = [notifications.CATEGORIES[c] for c in categories]
    if request.method == "POST":
        notifications.unsubscribe(user, categories)
        db.session.commit()
        return redirect(url_for("notifications.unsubscribe", token=token, done=1), code=303)
    stopped = notifications.modes([user.id], categories[0])[user.id] == "off" if len(categories) == 1 else False
    return render_template("notifications/unsubscribe.html", user=user, labels=labels,
                           done=request.args.get("done") == "1" or stopped)


@admin_bp.before_request
@login_required
def _admins_only():
    require_admin()


@admin_bp.get("")
def index():
    state = request.args.get("state", "queued")
    if state not in OUTBOX_STATES:
        state = "queued"
    page_number = request.args.get("page", 1, type=int) or 1
    messages, total = outbox.page(state, page_number)
    shown = None
    show_id = request.args.get("show", type=int)
    if show_id:
        shown = db.session.get(OutboxMessage, show_id)
    return render_template("admin/outbox.html", state=state, states=OUTBOX_STATES, counts=outbox.counts(),
                           messages=messages, total=total, page=max(page_number, 1), page_size=outbox.PAGE_SIZE,
                           shown=shown, smtp=bool(current_app.config["SMTP_HOST"]),
                           mail_dir=current_app.config["MAIL_DIR"])


@admin_bp.post("/retry")
def retry():
    if not EmptyForm().validate_on_submit():
        abort(400)
    try:
        message = outbox.retry(request.form.get("message_id"), actor=current_user)
        db.session.commit()
    except ValidationFailed as exc:
        db.session.rollback()
        flash(" ".join(exc.errors.values()), "error")
        return redirect(url_for("outbox.index", state="failed"), code=303)
    flash(f"Message {message.id} to {message.to_addr} queued again.", "success")
    return redirect(url_for("outbox.index", state="failed"), code=303)
