"""Patient pseudonyms: a keyed hash of the raw id with a secret, per-run-directory salt.

Raw ids (CSV columns, DICOM PatientID, file-name schemes) live only in memory during a
scan. The salt is random and kept in RUN_DIR/.pseudonym-salt (owner-only permissions);
without it, sequential ids such as ChestX-ray14's cannot be recovered by hashing guesses.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from cxrbio.run.atomic import atomic_write_text


def load_or_create_salt(path: Path) -> bytes:
    if path.is_file():
        return path.read_text(encoding="utf-8").strip().encode()
    salt = secrets.token_hex(16)
    atomic_write_text(path, salt + "\n")
    os.chmod(path, 0o600)
    return salt.encode()


def pseudonym(raw_id: str, salt: bytes) -> str:
    return "P" + hmac.new(salt, raw_id.encode("utf-8"), hashlib.sha256).hexdigest()[:12]
