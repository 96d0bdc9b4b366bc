"""Evidence in S3-compatible object storage (issue 18, "More than one host").

The tests run the store against moto's S3 server started as a separate process on a loopback port, so
every call goes over HTTP through boto3 exactly as against MinIO or AWS.
"""
import hashlib
import io
import os
import uuid
import zipfile
from pathlib import Path

import pytest
import sqlalchemy as sa
from werkzeug.datastructures import FileStorage

from tests.s3_server import CREDENTIALS, make_bucket, s3_server
from tests.test_evidence import PDF, _login, _upload, ev  # noqa: F401 - the evidence world, as a fixture here
from tracker.models import DocumentFile, Evidence, MonitoringPeriod
from tracker.services import evidence as evidence_service
from tracker.services.backup import _copy_evidence as copy_evidence
from tracker.storage import CorruptBlob, S3Store, get_store


@pytest.fixture(scope="session")
def s3_endpoint():
    with s3_server() as endpoint:
        yield endpoint


@pytest.fixture
def s3(s3_endpoint, monkeypatch):
    """A fresh bucket per test; the app is configured for it."""
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    bucket = f"evidence-{uuid.uuid4().hex[:12]}"
    client = make_bucket(s3_endpoint, bucket)
    return {"client": client, "bucket": bucket,
            "config": {"EVIDENCE_STORE": f"s3://{bucket}/tracker", "S3_ENDPOINT_URL": s3_endpoint,
                       "S3_REGION": "us-east-1"}}


@pytest.fixture
def app(make_app, s3):
    """Every test here runs the app on the bucket (client, auth and db follow this fixture)."""
    app = make_app(**s3["config"])
    with app.app_context():
        yield app


def _keys(s3):
    listing = s3["client"].list_objects_v2(Bucket=s3["bucket"])
    return sorted(item["Key"] for item in listing.get("Contents", []))


def test_put_streams_in_parts_and_keeps_the_content_addressed_layout(app, s3, tmp_path):
    store = get_store()
    assert isinstance(store, S3Store)
    data = os.urandom(9 * 1024 * 1024)  # above boto3's 8 MB multipart threshold
    sha = hashlib.sha256(data).hexdigest()
    blob = store.put(io.BytesIO(data))
    assert (blob.sha256, blob.size) == (sha, len(data))
    assert _keys(s3) == [f"tracker/{sha[:2]}/{sha[2:4]}/{sha}"]
    head = s3["client"].head_object(Bucket=s3["bucket"], Key=_keys(s3)[0])
    assert head["Metadata"]["sha256"] == sha and head["ContentLength"] == len(data)
    with store.open(sha) as reader:
        assert reader.read(-1) == data[:8 * 1024 * 1024]  # read in chunks, never the whole object at once
        assert reader.read(-1) + reader.read(-1) == data[8 * 1024 * 1024:]
    assert store.exists(sha) and not store.exists("0" * 64)
    # The same content again is the same object: nothing new is written.
    assert store.put(io.BytesIO(data)).sha256 == sha and len(_keys(s3)) == 1


def test_a_refused_file_never_reaches_the_bucket(app, s3):
    def refuse(path):
        raise ValueError("not a PDF")

    store = get_store()
    before = set(Path(store.tmp_dir).glob("upload-*"))
    with pytest.raises(ValueError, match="not a PDF"):
        store.put(io.BytesIO(b"MZ executable"), check=refuse)
    with pytest.raises(ValueError, match="too large"):
        store.put(io.BytesIO(b"x" * 2048), max_bytes=1024)
    assert _keys(s3) == []
    assert set(Path(store.tmp_dir).glob("upload-*")) <= before  # no temporary file left behind


def test_upload_and_download_through_the_app(app, client, auth, db, ev):  # noqa: F811
    _login(auth, ev)
    assert _upload(auth, ev["add"], "roster.pdf", PDF).status_code == 303
    evidence = db.session.execute(sa.select(Evidence)).scalar_one()
    assert get_store().exists(evidence.sha256)
    assert not Path(app.config["EVIDENCE_DIR"]).exists()  # nothing on this host's disk
    with client.get(f"/agencies/agency-a/evidence/{evidence.id}/download") as response:
        assert response.status_code == 200
        assert response.get_data() == PDF
        assert response.content_length == len(PDF)
        assert response.headers["X-Evidence-SHA256"] == hashlib.sha256(PDF).hexdigest()


def test_an_object_altered_in_the_bucket_is_never_served_as_evidence(app, s3, client, auth, db, ev):  # noqa: F811
    _login(auth, ev)
    _upload(auth, ev["add"], "roster.pdf", PDF)
    evidence = db.session.execute(sa.select(Evidence)).scalar_one()
    key = get_store().key_for(evidence.sha256)
    tampered = PDF.replace(b"Catalog", b"Catalug")
    s3["client"].put_object(Bucket=s3["bucket"], Key=key, Body=tampered, Metadata={"sha256": evidence.sha256})
    with pytest.raises(CorruptBlob):
        with client.get(f"/agencies/agency-a/evidence/{evidence.id}/download") as response:
            response.get_data()
    # The evidence package refuses the file too, rather than packing the altered bytes.
    period = MonitoringPeriod(agency_id=ev["a"].id, name="P1", start_date=evidence.created_at.date(),
                              end_date=evidence.created_at.date())
    db.session.add(period)
    db.session.execute(sa.update(Evidence).values(visibility="shareable"))
    db.session.commit()
    from tracker.services.exports import evidence_package

    with pytest.raises(CorruptBlob):
        evidence_package(ev["a"], period)[0].close()


def test_sweep_removes_only_unreferenced_objects(app, s3, db, ev):  # noqa: F811
    store = get_store()
    staged = evidence_service.stage_upload(FileStorage(stream=io.BytesIO(PDF), filename="a.pdf"), 10**6)
    kept = staged[0]
    evidence_service.add_file(ev["req"], staged, {"title": "Doc", "visibility": "restricted"},
                              actor=ev["users"]["officer"])
    document = store.put(io.BytesIO(PDF + b"% minutes"))
    db.session.add(DocumentFile(agency_id=ev["a"].id, sha256=document.sha256, size_bytes=document.size,
                                filename="minutes.pdf", media_type="application/pdf"))
    orphan = store.put(io.BytesIO(PDF + b"% orphan"))
    db.session.commit()
    assert evidence_service.remove_orphan_blobs(min_age_seconds=3600) == 0  # too young to be swept
    assert evidence_service.remove_orphan_blobs(min_age_seconds=0) == 1
    assert not store.exists(orphan.sha256)
    assert store.exists(kept.sha256) and store.exists(document.sha256)


def test_backup_copies_and_verifies_the_objects(app, s3, db, ev, tmp_path):  # noqa: F811
    store = get_store()
    staged = evidence_service.stage_upload(FileStorage(stream=io.BytesIO(PDF), filename="a.pdf"), 10**6)
    blob = staged[0]
    evidence_service.add_file(ev["req"], staged, {"title": "Doc", "visibility": "restricted"},
                              actor=ev["users"]["officer"])
    db.session.commit()
    assert copy_evidence(tmp_path / "backup") == 1
    copied = tmp_path / "backup" / blob.sha256[:2] / blob.sha256[2:4] / blob.sha256
    assert copied.read_bytes() == PDF
    s3["client"].put_object(Bucket=s3["bucket"], Key=store.key_for(blob.sha256), Body=b"rot")
    with pytest.raises(CorruptBlob):
        copy_evidence(tmp_path / "second")
    assert not (tmp_path / "second" / blob.sha256[:2] / blob.sha256[2:4] / blob.sha256).exists()


def test_a_bad_store_address_is_refused_with_the_setting_named(make_app, s3):
    app = make_app(EVIDENCE_STORE="ftp://somewhere/evidence")
    with app.app_context(), pytest.raises(ValueError, match="EVIDENCE_STORE must be empty"):
        get_store()
    app = make_app(EVIDENCE_STORE="s3://")
    with app.app_context(), pytest.raises(ValueError, match="s3://bucket/prefix"):
        get_store()


def test_zip_evidence_package_streams_from_the_bucket(app, s3, db, ev):  # noqa: F811
    staged = evidence_service.stage_upload(FileStorage(stream=io.BytesIO(PDF), filename="a.pdf"), 10**6)
    evidence = evidence_service.add_file(ev["req"], staged, {"title": "Doc", "visibility": "shareable"},
                                         actor=ev["users"]["officer"])
    day = evidence.created_at.date()
    period = MonitoringPeriod(agency_id=ev["a"].id, name="P1", start_date=day, end_date=day)
    db.session.add(period)
    db.session.commit()
    from tracker.services.exports import evidence_package

    package, count = evidence_package(ev["a"], period)
    package.seek(0)
    with package, zipfile.ZipFile(package) as archive:
        files = [name for name in archive.namelist() if name.endswith(".pdf")]
        assert len(files) == 1 and archive.read(files[0]) == PDF
