"""File checksums, computed in one streaming pass (raw films, manifests, trained models)."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class Checksums:
    size: int
    md5: str
    sha1: str
    sha256: str


def file_checksums(path: str | os.PathLike[str]) -> Checksums:
    """Size, md5, sha1 and sha256 of a file, in one streaming pass."""
    md5 = hashlib.md5(usedforsecurity=False)
    sha1 = hashlib.sha1(usedforsecurity=False)
    sha256 = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            md5.update(chunk)
            sha1.update(chunk)
            sha256.update(chunk)
            size += len(chunk)
    return Checksums(size, md5.hexdigest(), sha1.hexdigest(), sha256.hexdigest())
