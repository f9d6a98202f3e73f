"""Atomic outputs: a file or directory appears complete under its final name, or not at all.

Everything is produced under a hidden temporary name in the destination's own directory (same
file system, so the final `os.replace` is atomic) and renamed only once it is complete. A crash
or an exception leaves at most a `.<name>.tmp-*` entry that no reader looks for.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def _temp_sibling(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path to create `path` at (a file or a directory); publish it on success.

    A directory that already exists at `path` is replaced as a whole. On an exception the
    temporary is removed and `path` is left as it was.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    temp = _temp_sibling(final)
    try:
        yield temp
        if temp.is_file():
            # Writers like safetensors create 0600 files; publish with the usual permissions.
            os.chmod(temp, 0o666 & ~_umask())
            _fsync(temp)
        if temp.is_dir() and final.exists():
            old = _temp_sibling(final)
            os.replace(final, old)
            os.replace(temp, final)
            _remove(old)
        else:
            os.replace(temp, final)
    except BaseException:
        _remove(temp)
        raise


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(path) as temp:
        temp.write_bytes(data)


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write `obj` as indented JSON (keys in insertion order, trailing newline), atomically."""
    write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode())


def read_json(path: str | os.PathLike[str]) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)
