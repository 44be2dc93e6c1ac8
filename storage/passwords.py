"""Password hashing for console sign-in: argon2id (memory-hard) from argon2-cffi.

The parameters are argon2-cffi's defaults, RFC 9106's "low memory" profile (64 MiB, 3 passes, 4 lanes);
they are written into every hash, so stronger ones later still verify the old hashes (and a sign-in
with an old hash re-hashes it, see `needs_rehash`).
"""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_HASHER = PasswordHasher()


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    """True when `password` matches `stored_hash`; without a hash (unknown user, user without a password)
    it hashes the password anyway, so such a sign-in takes as long as a wrong password for a real user
    (no timing oracle for which user names exist)."""
    if not stored_hash:
        _HASHER.hash(password)
        return False
    try:
        return _HASHER.verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    return _HASHER.check_needs_rehash(stored_hash)
