"""The run's pseudonym salt: made once, kept in the run (mode 0600), never in a report.

Patient identifiers are replaced by salted HMAC pseudonyms (:func:`cxrbio.data.privacy.pseudonym`);
the salt stays with the run so that re-scans and external sets map a patient to the same pseudonym.
"""

from __future__ import annotations

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
