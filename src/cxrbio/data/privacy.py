"""Patient pseudonyms: a keyed hash of the raw id with a secret, per-run-directory salt.

Raw ids (CSV columns, DICOM PatientID, file-name schemes) live only in memory during a
scan. The salt is random and kept in RUN_DIR/.pseudonym-salt (owner-only permissions);
without it, sequential ids such as ChestX-ray14's cannot be recovered by hashing guesses.
"""

from __future__ import annotations

import hashlib
import hmac


def pseudonym(raw_id: str, salt: bytes) -> str:
    return "P" + hmac.new(salt, raw_id.encode("utf-8"), hashlib.sha256).hexdigest()[:12]
