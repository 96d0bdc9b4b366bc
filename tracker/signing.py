"""The Ed25519 key that signs audit checkpoints. It is never stored in the database.

AUDIT_SIGNING_KEY (a PEM private key, or the 32-byte seed in base64) or the file AUDIT_SIGNING_KEY_FILE
(PEM, default instance/audit-signing.key). Production refuses to start without one while AUDIT_CHECKPOINTS
is on; development and testing create the file (mode 0600) the first time, as `make run` does.
"""
import base64
import hashlib
import os
import tempfile
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from tracker.config import ConfigError

MISSING = (
    "AUDIT_SIGNING_KEY is not set and {path} does not exist. Audit checkpoints (AUDIT_CHECKPOINTS, on) need an "
    "Ed25519 key kept outside the database: create one with `openssl genpkey -algorithm ed25519 -out {path}` "
    "(mode 0600, readable by the app only), or set AUDIT_CHECKPOINTS=off."
)


def _load(text, source):
    text = text.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_private_key(text.encode("ascii"), password=None)
        else:
            key = Ed25519PrivateKey.from_private_bytes(base64.b64decode(text, validate=True))
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{source} is not an Ed25519 private key (PEM, or the 32-byte seed in base64)") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{source} is not an Ed25519 key")
    return key


def _pem(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _create_file(path):
    """Write a new key to path, atomically: a concurrent start-up either wins or reads the winner's key."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".audit-key-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(_pem(Ed25519PrivateKey.generate()))
        os.chmod(tmp, 0o600)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
    finally:
        os.unlink(tmp)


def ensure_signing_key(config):
    """Put the private key object in config["AUDIT_PRIVATE_KEY"] (None while checkpoints are off)."""
    config["AUDIT_PRIVATE_KEY"] = None
    if not config.get("AUDIT_CHECKPOINTS"):
        return
    if config.get("AUDIT_SIGNING_KEY"):
        config["AUDIT_PRIVATE_KEY"] = _load(config["AUDIT_SIGNING_KEY"], "AUDIT_SIGNING_KEY")
        return
    path = Path(config["AUDIT_SIGNING_KEY_FILE"])
    if not path.exists():
        if config.get("TRACKER_ENV") == "production":
            raise ConfigError(MISSING.format(path=path))
        _create_file(path)
    config["AUDIT_PRIVATE_KEY"] = _load(path.read_text(encoding="ascii"), str(path))


def raw_public(public_key):
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_text(public_key):
    """The public key as a monitor copies it: the 32 raw bytes in base64."""
    return base64.b64encode(raw_public(public_key)).decode("ascii")


def key_id(public_key):
    return hashlib.sha256(raw_public(public_key)).hexdigest()[:16]


def parse_public(text):
    """A public key given as base64 of its 32 bytes, or as PEM."""
    text = text.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_public_key(text.encode("ascii"))
        else:
            key = Ed25519PublicKey.from_public_bytes(base64.b64decode(text, validate=True))
    except (ValueError, TypeError) as exc:
        raise ValueError(f"not an Ed25519 public key: {text[:20]}…") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return key


def sign(private_key, message):
    return private_key.sign(message).hex()


def verifies(public_key, message, signature_hex):
    try:
        public_key.verify(bytes.fromhex(signature_hex), message)
    except (InvalidSignature, ValueError):
        return False
    return True
