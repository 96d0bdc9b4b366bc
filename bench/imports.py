"""Decree paragraph import at its limit (issue 12): a 5,000-row file, in a fresh process and a fresh schema.

`python bench/imports.py URL WORKDIR` writes a CSV of 4,999 paragraphs as a user would (Excel's CSV UTF-8:
byte-order mark, CRLF, quoted multi-line text; two instruments, 25 sections, 5 entities, every kind of
deadline phrase, a third of them recurring, catalog links), imports it, imports it again unchanged, and
times the refusals of a 5,001-row CSV and of an XLSX of 300,000 one-cell rows. Prints one JSON line: wall
and CPU seconds and the growth of the peak resident set (MB) of each.
"""
import csv
import io
import json
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
ROWS = 4999  # plus the header: 5,000 rows, the limit
DEADLINES = ("within 45 days of the Effective Date", "no later than 150 days after the Effective Date", "6 months",
             "December 31, 2026", "12/31/2026", "annually", "every six months",
             "quarterly, beginning 90 days after the Effective Date",
             "within 180 days of the Effective Date and annually thereafter", "")


def decree_csv():
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(["Paragraph", "Section", "Instrument", "Entity", "Title", "Text", "Module", "Deadline",
                     "Catalog"])
    for i in range(1, ROWS + 1):
        writer.writerow([f"¶ {i}" if i % 3 else f"{i}(a)", f"{['III', 'IV', 'V', 'VI', 'VII'][i % 5]}.{'ABCDE'[i % 4]}"
                         f" Heading {i % 25}", "MOA 2024" if i % 10 == 0 else "Consent Decree",
                         f"Entity {i % 5}", "",
                         f"Paragraph {i}: the department will do a thing.\n\n(a) first;\n(b) second.", "cit",
                         DEADLINES[i % len(DEADLINES)], "CIT-001; CIT-002" if i % 7 == 0 else ""])
    return ("\ufeff" + buf.getvalue()).encode("utf-8")


def _status_kb(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _timed(fn):
    """Wall and CPU seconds, and how far the process's peak resident set grew (VmHWM, reset first as in
    bench/exports.py), so the measure costs nothing while it runs."""
    Path("/proc/self/clear_refs").write_text("5")
    before = _status_kb("VmHWM")
    cpu0, wall0 = time.process_time(), time.perf_counter()
    result = fn()
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return result, {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
                    "peak_mb": round(max(_status_kb("VmHWM") - before, 0) / 1024, 1)}


def _world():
    from tests.factories import make_agency, make_instrument, make_module, make_recommendation, make_user

    module = make_module("cit", "Crisis Intervention Teams", 1)
    make_recommendation("CIT-001", module=module)
    make_recommendation("CIT-002", module=module)
    agency = make_agency(slug="bench-import", name="Bench PD", effective_date=date(2025, 1, 1))
    make_instrument(agency, short_name="MOA 2024", effective_date=date(2024, 6, 1))
    return agency, make_user("bench-officer@example.test", role="officer", agency=agency)


def _refusals(imports):
    from openpyxl import Workbook

    too_many = ("paragraph,title,module\r\n" + "".join(f"{i},T,cit\r\n" for i in range(5001))).encode()
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet()
    for _ in range(300_000):
        sheet.append(["x"])
    buf = io.BytesIO()
    workbook.save(buf)
    figures = {}
    for name, filename, data in (("csv_5001_rows", "p.csv", too_many), ("xlsx_300000_rows", "p.xlsx", buf.getvalue())):
        def refuse(filename=filename, data=data):
            try:
                header, rows = imports.read_rows(filename, data)
                list(rows)
            except imports.ImportFailed as exc:
                return exc.problems[0]
            return None
        message, figures[name] = _timed(refuse)
        figures[name]["bytes"] = len(data)
        assert message and "5,000 rows" in message, message
    return figures


def main(db_url, work):
    from tracker import create_app
    from tracker.extensions import db
    from tracker.services import imports

    data = decree_csv()
    (Path(work) / "decree-5000.csv").write_bytes(data)
    app = create_app({"TRACKER_ENV": "development", "SECRET_KEY": "bench-only-secret-key",
                      "SQLALCHEMY_DATABASE_URI": db_url, "EVIDENCE_DIR": f"{work}/evidence"})
    with app.app_context():
        db.create_all()
        agency, officer = _world()
        db.session.commit()

        def run():
            result = imports.import_paragraphs(agency, "decree-5000.csv", data, actor=officer)
            db.session.commit()
            return result

        (added, _updated, _unchanged), first = _timed(run)
        (_added, updated, unchanged), again = _timed(run)
        assert len(added) == ROWS and unchanged == ROWS and not updated
        print(json.dumps({"rows": ROWS + 1, "bytes": len(data), "import": first, "reimport_unchanged": again,
                          "refused": _refusals(imports)}))
        db.session.remove()
        db.drop_all()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
