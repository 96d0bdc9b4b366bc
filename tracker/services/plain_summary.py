"""The dashboard's opening paragraph in plain language (issue 14 §4), generated from the same numbers as the
tables below it, and the table of exactly those numbers:

"The department reports 24 of 75 active requirements implemented. The monitor's last filed report (Report 3,
ending March 2026) rated 3 requirements Full compliance and 9 Partial compliance. 13 deadlines have passed;
8 fall in the next 30 days. The department has answered 4 of 5 committee recommendations."
"""


def _plural(n, one, many):
    return f"{n} {one if n == 1 else many}"


def _and(parts):
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _findings(trend, labels):
    """The last filed report's sentence and rows (levels in the scale's order, only those used)."""
    if not trend:
        return "The monitor has not filed a report yet.", []
    last = trend[-1]
    period = last["period"]
    when = f"{period.name}, ending {period.end_date:%B %Y}"
    used = [(label, last["levels"][label]) for label in labels if last["levels"].get(label)]
    used += [(label, n) for label, n in last["levels"].items() if label not in labels and n]
    if not used:
        return f"The monitor's last filed report ({when}) rated no requirement.", []
    first_label, first_n = used[0]
    parts = [f"{_plural(first_n, 'requirement', 'requirements')} {first_label}"]
    parts += [f"{n} {label}" for label, n in used[1:]]
    rows = [(f"Rated {label} in the last filed report ({period.name})", n) for label, n in used]
    return f"The monitor's last filed report ({when}) rated {_and(parts)}.", rows


def _deadlines(overdue, soon):
    passed = "No deadline has passed" if overdue == 0 else \
        f"{_plural(overdue, 'deadline has', 'deadlines have')} passed"
    coming = "none falls in the next 30 days" if soon == 0 else \
        f"{soon} {'falls' if soon == 1 else 'fall'} in the next 30 days"
    return f"{passed}; {coming}."


def _committee(counts):
    if not counts["total"]:
        return "The advisory committee has not submitted a recommendation yet.", []
    sentence = f"The department has answered {counts['answered']} of " \
               f"{_plural(counts['total'], 'committee recommendation', 'committee recommendations')}"
    if counts["overdue"]:
        sentence += f"; {_plural(counts['overdue'], 'answer is', 'answers are')} overdue"
    rows = [("Committee recommendations submitted", counts["total"]),
            ("Answered by the department", counts["answered"]), ("Answers overdue", counts["overdue"])]
    return sentence + ".", rows


def summary(total, trend, labels, committee_counts, module_name=""):
    """{"text": the paragraph, "rows": [(what, number)]}: every number of the text is a row of the table."""
    scope = f"{module_name} " if module_name else ""
    opening = f"The department reports {total.by_status['implemented']} of " \
              f"{_plural(total.total, f'active {scope}requirement', f'active {scope}requirements')} implemented."
    findings, finding_rows = _findings(trend, labels)
    committee, committee_rows = _committee(committee_counts)
    rows = [("Active requirements", total.total), ("Reported implemented by the department",
                                                   total.by_status["implemented"]),
            *finding_rows, ("Deadlines passed", total.overdue),
            ("Due in the next 30 days", total.due_within[30]), *committee_rows]
    return {"text": " ".join([opening, findings, _deadlines(total.overdue, total.due_within[30]), committee]),
            "rows": rows}
