"""Password hashing (argon2id) and the password policy."""
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app

# A short list of the passwords attackers try first; longer lists belong to a breach-check service.
COMMON_PASSWORDS = frozenset(
    """password password1 password123 passw0rd 123456 12345678 123456789 1234567890 qwerty qwerty123
    qwertyuiop letmein welcome welcome1 admin admin123 administrator iloveyou monkey dragon football
    baseball abc123 111111 000000 sunshine princess trustno1 changeme changeme123 police police123
    p@ssw0rd p@ssword secret secret123 default master login 1q2w3e4r 1qaz2wsx zaq12wsx
    passwordpassword 123123123123 aaaaaaaaaaaa qwertyqwerty""".split()
)

_hashers = {}


def hasher():
    cfg = current_app.config
    params = (cfg["ARGON2_TIME_COST"], cfg["ARGON2_MEMORY_KIB"], cfg["ARGON2_PARALLELISM"])
    if params not in _hashers:
        _hashers[params] = PasswordHasher(time_cost=params[0], memory_cost=params[1], parallelism=params[2])
    return _hashers[params]


def hash_password(password):
    return hasher().hash(password)


def verify_password(stored_hash, password):
    try:
        return hasher().verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash):
    return hasher().check_needs_rehash(stored_hash)


def password_problem(password, email=""):
    """Return why a new password is refused, or None. No composition rules, no upper limit."""
    minimum = current_app.config["PASSWORD_MIN_LENGTH"]
    if len(password) < minimum:
        return f"Password must be at least {minimum} characters long."
    if len(password) > 1024:
        return "Password must be at most 1024 characters long."
    lowered = password.lower()
    if lowered in COMMON_PASSWORDS or len(set(password)) < 3:
        return "This password is too common or too simple; choose a longer passphrase."
    if email and lowered == email.lower():
        return "Password must not be your email address."
    return None
