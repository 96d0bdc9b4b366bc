"""Evidence store: files kept by SHA-256, behind one small interface, on local disk or in object storage.

`LocalStore` writes to EVIDENCE_DIR/ab/cd/<sha256>; `S3Store` writes the same layout under a bucket
prefix of any S3-compatible server (EVIDENCE_STORE=s3://bucket/prefix), so several app hosts can share
one store. Both hash while they copy and check the hash again on every read: a blob that no longer
matches its name is never handed out as the evidence it claims to be.

A crash can leave an unreferenced blob (swept by `flask evidence sweep`), never a database row without
its blob, because the row is written after the blob is in place.
"""
import hashlib
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from flask import current_app

CHUNK = 1024 * 1024
log = logging.getLogger("tracker.security")
HEX = frozenset("0123456789abcdef")


class CorruptBlob(Exception):
    """The bytes read back do not hash to the name they are stored under."""


@dataclass
class StoredBlob:
    sha256: str
    size: int


def _checked(sha256):
    if len(sha256) != 64 or any(c not in HEX for c in sha256):
        raise ValueError("not a SHA-256 hex digest")
    return sha256


def _relative(sha256):
    _checked(sha256)
    return f"{sha256[:2]}/{sha256[2:4]}/{sha256}"


def spool(stream, tmp_dir, max_bytes=None, check=None):
    """Copy a stream into a temporary file in chunks while hashing; returns (path, StoredBlob).

    `check(temp_path)` runs on the complete file, so a refused file never reaches the store. The caller
    removes the file; on any error here it is removed before the exception leaves."""
    digest = hashlib.sha256()
    size = 0
    Path(tmp_dir).mkdir(parents=True, exist_ok=True)
    tmp = tempfile.NamedTemporaryFile(dir=tmp_dir, prefix="upload-", delete=False)
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
        return Path(tmp.name), StoredBlob(digest.hexdigest(), size)
    except BaseException:
        Path(tmp.name).unlink(missing_ok=True)
        raise


class VerifyingReader:
    """A file-like reader that hashes what passes through and raises CorruptBlob at the end on a mismatch."""

    def __init__(self, raw, sha256):
        self.raw = raw
        self.expected = sha256
        self.digest = hashlib.sha256()
        self.done = False

    def read(self, size=-1):
        chunk = self.raw.read(size if size and size > 0 else CHUNK * 8)
        if chunk:
            self.digest.update(chunk)
        elif not self.done:
            self.done = True
            if self.digest.hexdigest() != self.expected:
                log.error("evidence store: file %s does not match its SHA-256", self.expected)
                raise CorruptBlob(f"stored file {self.expected} does not match its SHA-256")
        return chunk

    def close(self):
        self.raw.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class LocalStore:
    def __init__(self, root):
        self.root = Path(root)
        self.description = f"folder {self.root}"

    def path_for(self, sha256):
        return self.root / _relative(sha256)

    def put(self, stream, max_bytes=None, check=None):
        tmp, blob = spool(stream, self.root / "tmp", max_bytes, check)
        try:
            final = self.path_for(blob.sha256)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, final)
            os.chmod(final, 0o440)
            # The rename itself must survive a power loss before the database row refers to it.
            directory = os.open(final.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
            return blob
        finally:
            tmp.unlink(missing_ok=True)

    def open(self, sha256):
        return VerifyingReader(open(self.path_for(sha256), "rb"), sha256)

    def exists(self, sha256):
        return self.path_for(sha256).exists()

    def iter_blobs(self):
        """(sha256, modified time as a Unix timestamp) for every stored file."""
        for path in self.root.glob("??/??/*"):
            if path.is_file() and len(path.name) == 64:
                yield path.name, path.stat().st_mtime

    def delete(self, sha256):
        self.path_for(sha256).unlink(missing_ok=True)

    def stale_temp_files(self, older_than):
        tmp_dir = self.root / "tmp"
        if tmp_dir.exists():
            for path in tmp_dir.iterdir():
                if path.stat().st_mtime < older_than:
                    yield path


class S3Store:
    """The same content-addressed layout in an S3-compatible bucket (AWS S3, MinIO, Ceph, moto...).

    Uploads stream from a spooled temporary file in parts (boto3's managed transfer) with an SHA-256
    checksum the server verifies per part; the whole-file hash is kept as object metadata and compared
    after the upload. Downloads stream and are hashed on the way out."""

    def __init__(self, url, endpoint_url=None, region=None, client=None, tmp_dir=None):
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise ValueError(f"EVIDENCE_STORE must look like s3://bucket/prefix, got {url!r}")
        self.bucket = parts.netloc
        self.prefix = parts.path.strip("/")
        self.description = f"s3://{self.bucket}/{self.prefix}"
        self.tmp_dir = Path(tmp_dir or tempfile.gettempdir())
        if client is None:
            import boto3  # only a deployment with object storage needs it loaded

            client = boto3.client("s3", endpoint_url=endpoint_url or None, region_name=region or None)
        self.client = client

    def key_for(self, sha256):
        relative = _relative(sha256)
        return f"{self.prefix}/{relative}" if self.prefix else relative

    def put(self, stream, max_bytes=None, check=None):
        tmp, blob = spool(stream, self.tmp_dir, max_bytes, check)
        try:
            key = self.key_for(blob.sha256)
            if not self._matches(key, blob):
                with open(tmp, "rb") as src:
                    self.client.upload_fileobj(src, self.bucket, key, ExtraArgs={
                        "Metadata": {"sha256": blob.sha256}, "ChecksumAlgorithm": "SHA256"})
                if not self._matches(key, blob):
                    raise CorruptBlob(f"object storage kept a different object for {blob.sha256}")
            return blob
        finally:
            tmp.unlink(missing_ok=True)

    def _head(self, key):
        from botocore.exceptions import ClientError

        try:
            return self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
                return None
            raise

    def _matches(self, key, blob):
        head = self._head(key)
        return bool(head) and head["ContentLength"] == blob.size and \
            head.get("Metadata", {}).get("sha256") == blob.sha256

    def open(self, sha256):
        body = self.client.get_object(Bucket=self.bucket, Key=self.key_for(sha256))["Body"]
        return VerifyingReader(body, sha256)

    def exists(self, sha256):
        return self._head(self.key_for(sha256)) is not None

    def iter_blobs(self):
        paginator = self.client.get_paginator("list_objects_v2")
        start = f"{self.prefix}/" if self.prefix else ""
        for page in paginator.paginate(Bucket=self.bucket, Prefix=start):
            for item in page.get("Contents", []):
                name = item["Key"].rsplit("/", 1)[-1]
                if len(name) == 64 and set(name) <= HEX:
                    yield name, item["LastModified"].timestamp()

    def delete(self, sha256):
        self.client.delete_object(Bucket=self.bucket, Key=self.key_for(sha256))

    def stale_temp_files(self, older_than):
        return iter(())  # uploads spool in the system temp folder and always remove their file


def copy_blob(store, sha256, destination):
    """Stream one blob to a local file, verifying its hash; a mismatch leaves no file behind."""
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    try:
        with store.open(sha256) as src, open(destination, "wb") as dst:
            shutil.copyfileobj(src, dst, CHUNK)
    except BaseException:
        destination.unlink(missing_ok=True)
        raise


def make_store(config):
    url = config.get("EVIDENCE_STORE") or ""
    if url.startswith("s3://"):
        return S3Store(url, endpoint_url=config.get("S3_ENDPOINT_URL"), region=config.get("S3_REGION"))
    if url:
        raise ValueError(f"EVIDENCE_STORE must be empty (local folder) or s3://bucket/prefix, got {url!r}")
    return LocalStore(config["EVIDENCE_DIR"])


def get_store():
    """The app's store; an object store is built once per app (its client holds a connection pool)."""
    app = current_app._get_current_object()
    if not app.config.get("EVIDENCE_STORE"):
        return LocalStore(app.config["EVIDENCE_DIR"])
    store = app.extensions.get("evidence_store")
    if store is None:
        store = app.extensions["evidence_store"] = make_store(app.config)
    return store
