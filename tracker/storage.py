"""Evidence store: files kept by SHA-256 outside the web root, behind one small interface.

`LocalStore` writes to EVIDENCE_DIR/ab/cd/<sha256>. An object-storage backend only needs the
same four methods. A crash can leave an unreferenced blob (swept by `flask evidence sweep`),
never a database row without its blob, because the row is written after the blob is in place.
"""
import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from flask import current_app

CHUNK = 1024 * 1024


@dataclass
class StoredBlob:
    sha256: str
    size: int


class LocalStore:
    def __init__(self, root):
        self.root = Path(root)

    def path_for(self, sha256):
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValueError("not a SHA-256 hex digest")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def temp_file(self):
        """A temporary file inside the store, so the final rename never crosses file systems."""
        tmp_dir = self.root / "tmp"
        tmp_dir.mkdir(parents=True, exist_ok=True)
        return tempfile.NamedTemporaryFile(dir=tmp_dir, prefix="upload-", delete=False)

    def put(self, stream, max_bytes=None, check=None):
        """Copy a stream in chunks while hashing; returns StoredBlob.

        `check(temp_path)` runs on the complete temporary file before it is moved into place, so a
        refused file never enters the store. The temp file is removed on any error.
        """
        digest = hashlib.sha256()
        size = 0
        tmp = self.temp_file()
        try:
            with tmp:
                while chunk := stream.read(CHUNK):
                    size += len(chunk)
                    if max_bytes is not None and size > max_bytes:
                        raise ValueError("file too large")
                    digest.update(chunk)
                    tmp.write(chunk)
                tmp.flush()
                os.fsync(tmp.fileno())
            if check is not None:
                check(tmp.name)
            sha = digest.hexdigest()
            final = self.path_for(sha)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp.name, final)
            os.chmod(final, 0o440)
            # The rename itself must survive a power loss before the database row refers to it.
            directory = os.open(final.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
            return StoredBlob(sha, size)
        except BaseException:
            Path(tmp.name).unlink(missing_ok=True)
            raise

    def open(self, sha256):
        return open(self.path_for(sha256), "rb")

    def exists(self, sha256):
        return self.path_for(sha256).exists()

    def iter_blobs(self):
        for path in self.root.glob("??/??/*"):
            if path.is_file() and len(path.name) == 64:
                yield path.name, path

    def delete(self, sha256):
        self.path_for(sha256).unlink(missing_ok=True)


def get_store():
    return LocalStore(current_app.config["EVIDENCE_DIR"])
