"""Which evidence files we accept: the extension and the content must agree.

Signatures are checked on the first bytes; DOCX/XLSX are zip packages, opened to check their
parts and bounded in entry count and uncompressed size (zip bombs); CSV/TXT must be UTF-8 text
without NUL bytes.
"""
import zipfile

ALLOWED = {
    # extension: (media type served on download, description for messages)
    "pdf": ("application/pdf", "a PDF"),
    "png": ("image/png", "a PNG image"),
    "jpg": ("image/jpeg", "a JPEG image"),
    "jpeg": ("image/jpeg", "a JPEG image"),
    "docx": ("application/vnd.openxmlformats-officedocument.wordprocessingml.document", "a Word document"),
    "xlsx": ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "an Excel workbook"),
    "csv": ("text/csv", "a CSV file"),
    "txt": ("text/plain", "a text file"),
}
MAX_ZIP_ENTRIES = 2000
MAX_ZIP_UNCOMPRESSED = 200 * 1024 * 1024


class FileTypeError(ValueError):
    pass


def extension_of(filename):
    name = (filename or "").strip().lower()
    return name.rsplit(".", 1)[1] if "." in name else ""


def check(path, filename):
    """Return (extension, media_type) or raise FileTypeError with a reason a person can act on."""
    ext = extension_of(filename)
    if ext not in ALLOWED:
        allowed = ", ".join(sorted({e.upper() for e in ALLOWED if e != "jpeg"}))
        raise FileTypeError(f"Files of type .{ext or '(none)'} are not accepted. Allowed: {allowed}.")
    with open(path, "rb") as fh:
        head = fh.read(8192)
    if not head:
        raise FileTypeError("The file is empty.")
    kind = ALLOWED[ext][1]
    ok = {
        "pdf": lambda: head.startswith(b"%PDF-"),
        "png": lambda: head.startswith(b"\x89PNG\r\n\x1a\n"),
        "jpg": lambda: head.startswith(b"\xff\xd8\xff"),
        "jpeg": lambda: head.startswith(b"\xff\xd8\xff"),
        "docx": lambda: _office(path, head, "word/document.xml"),
        "xlsx": lambda: _office(path, head, "xl/workbook.xml"),
        "csv": lambda: _text(path),
        "txt": lambda: _text(path),
    }[ext]()
    if not ok:
        raise FileTypeError(f"The file is named .{ext} but its content is not {kind}.")
    return ext, ALLOWED[ext][0]


def _office(path, head, required_part):
    if not head.startswith(b"PK\x03\x04"):
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
            if len(entries) > MAX_ZIP_ENTRIES:
                raise FileTypeError(f"The document has too many parts ({len(entries)}).")
            if sum(e.file_size for e in entries) > MAX_ZIP_UNCOMPRESSED:
                raise FileTypeError("The document expands to more than 200 MB; it is refused.")
            names = {e.filename for e in entries}
    except zipfile.BadZipFile:
        return False
    return "[Content_Types].xml" in names and required_part in names


def _text(path):
    with open(path, "rb") as fh:
        data = fh.read(1024 * 1024)
    if b"\x00" in data:
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut at the read boundary is still text.
        return exc.start >= len(data) - 3
    return True
