"""The `download` stage: put the film into `data/raw/` beside a manifest of where it came from.

Sources (`data.source`):

- `archive.org`: read the item's metadata (`{archive_url}/metadata/{item}`), pick one of its
  files, download it into a persistent cache with HTTP range resume, verify its size and
  md5/sha1 against the metadata, then hardlink (or copy) it into `raw_dir`.
- `file`: local videos (`data.path`: a file, a list, or a directory's videos sorted by name),
  each accepted once PyAV decodes its first frame — all checked before any is copied.
- `synthetic`: the procedurally drawn cartoon of `willie.data.synthetic`, for offline runs.

Which files of the item: `data.file_name` when set (one name or a list, each one of the item's
files).
Otherwise the largest file whose name has a video extension (`VIDEO_EXTENSIONS`) among the
item's *original* uploads, or, when the item has no original video, among the *derivatives*
archive.org transcoded from them. Ties go to the file listed first in the metadata.

The download cache is `$WILLIE_CACHE_DIR` (default `~/.cache/willie`) `/downloads/<item>/<name>`.
Bytes arrive in `<name>.part`, renamed to `<name>` once verified: a killed run resumes from the
`.part`, and a verified file is not fetched again (only re-hashed, and downloaded afresh if it no
longer matches the metadata). A transient failure (no connection, a timeout, HTTP 429 or 5xx, a
connection dropped midway) is retried up to `data.retries` times with exponential back-off,
each retry continuing from the bytes already on disk. A download that does not match the
metadata is deleted and refused.

`raw_dir` is published atomically: a failed run leaves the previous one as it was. Its
`manifest.json` lists each file (checksums, frame rate, size, duration, audio stream or none)
and the corpus totals.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote

import requests
import urllib3
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from willie import __version__
from willie.atomic import atomic_path, write_json
from willie.checksums import Checksums, file_checksums
from willie.config import DataConfig
from willie.data.synthetic import render_synthetic_film
from willie.data.video import VideoError, VideoInfo, probe
from willie.errors import WillieError

VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".mkv", ".mov", ".avi", ".mpeg", ".mpg", ".ogv", ".webm", ".m4v"}
)
MANIFEST_FILE = "manifest.json"
SYNTHETIC_FILE = "synthetic_willie.mp4"
CHUNK_BYTES = 1 << 20
MAX_RETRY_DELAY_S = 60.0
USER_AGENT = f"willie/{__version__} (Steamboat Willie DVC pipeline)"
OFFLINE_HINT = (
    "Without the network, use a local copy of the film "
    "(dvc exp run -S data.source=file -S data.path=/path/to/film.mp4) "
    "or the synthetic offline demo (dvc exp run -S data.source=synthetic)"
)

T = TypeVar("T")
_console = Console(stderr=True)


@dataclass(frozen=True)
class ArchiveFile:
    """One entry of an archive.org item's `files` list."""

    name: str
    source: str  # "original" (uploaded), "derivative" (transcoded by archive.org), "metadata"
    size: int | None = None
    md5: str | None = None
    sha1: str | None = None

    @classmethod
    def from_metadata(cls, entry: dict[str, Any]) -> ArchiveFile:
        size = str(entry.get("size", ""))
        return cls(
            name=str(entry["name"]),
            source=str(entry.get("source", "")),
            size=int(size) if size.isdigit() else None,
            md5=entry.get("md5") or None,
            sha1=entry.get("sha1") or None,
        )

    @property
    def is_video(self) -> bool:
        return PurePosixPath(self.name).suffix.lower() in VIDEO_EXTENSIONS


def _names(files: Sequence[ArchiveFile]) -> str:
    return ", ".join(repr(f.name) for f in files) or "none"


def pick_file(item: str, files: Sequence[ArchiveFile], file_name: str | None = None) -> ArchiveFile:
    """The file of `item` to download, by the rule in this module's docstring."""
    videos = [f for f in files if f.is_video]
    if file_name is not None:
        for f in files:
            if f.name == file_name:
                return f
        raise WillieError(
            f"data.file_name = {file_name!r} is not a file of archive.org item {item!r}. "
            f"Its video files: {_names(videos)}"
        )
    originals = [f for f in videos if f.source == "original"]
    candidates = originals or [f for f in videos if f.source == "derivative"]
    if not candidates:
        raise WillieError(
            f"archive.org item {item!r} has no video file ({', '.join(sorted(VIDEO_EXTENSIONS))}); "
            f"its files: {_names(files)}. Check data.item, or name a file with data.file_name"
        )
    return max(candidates, key=lambda f: f.size or 0)


def fetch_item_files(
    session: requests.Session, cfg: DataConfig, *, retry_delay_s: float = 1.0
) -> list[ArchiveFile]:
    """The item's files, from archive.org's metadata API."""
    url = f"{cfg.archive_url}/metadata/{quote(cfg.item, safe='')}"

    def attempt() -> Any:
        with _get(session, url, timeout=cfg.timeout_s) as response:
            try:
                return response.json()
            except ValueError:
                raise WillieError(f"{url} did not answer with JSON metadata") from None

    metadata = _with_retries(attempt, retries=cfg.retries, delay_s=retry_delay_s)
    # archive.org answers 200 with `{}` for an item that does not exist.
    entries = metadata.get("files") if isinstance(metadata, dict) else None
    if not entries:
        raise WillieError(
            f"archive.org has no item {cfg.item!r} ({url} lists no files): check data.item"
        )
    return [ArchiveFile.from_metadata(e) for e in entries if isinstance(e, dict) and "name" in e]


def download_url(cfg: DataConfig, name: str) -> str:
    return f"{cfg.archive_url}/download/{quote(cfg.item, safe='')}/{quote(name)}"


class _TransientError(Exception):
    """A failed attempt worth retrying; its message is what the user reads if retries run out."""


def _with_retries(attempt: Callable[[], T], *, retries: int, delay_s: float) -> T:
    for attempt_index in range(retries + 1):
        try:
            return attempt()
        except _TransientError as e:
            if attempt_index == retries:
                attempts = f"{retries + 1} attempts" if retries else "1 attempt"
                raise WillieError(f"gave up after {attempts}: {e}") from None
            time.sleep(min(delay_s * 2**attempt_index, MAX_RETRY_DELAY_S))
    raise AssertionError("unreachable")


def _reason(error: requests.RequestException) -> str:
    """The innermost cause of a requests error ("[Errno 111] Connection refused")."""
    inner = error.args[0] if error.args else error
    return str(getattr(inner, "reason", inner)).rsplit(": ", 1)[-1]


def _get(
    session: requests.Session,
    url: str,
    *,
    timeout: float,
    headers: dict[str, str] | None = None,
    stream: bool = False,
) -> requests.Response:
    """GET `url`; a failure worth retrying raises _TransientError, any other a WillieError."""
    try:
        response = session.get(url, headers=headers, timeout=timeout, stream=stream)
    except requests.Timeout as e:
        raise _TransientError(
            f"{url} did not answer within data.timeout_s = {timeout:g} s. "
            f"Raise data.timeout_s if the network is slow. {OFFLINE_HINT}"
        ) from e
    except requests.ConnectionError as e:
        raise _TransientError(f"cannot reach {url} ({_reason(e)}). {OFFLINE_HINT}") from e
    status = response.status_code
    if status < 400 or (status == 416 and headers and "Range" in headers):
        return response
    response.close()
    if status == 404:
        raise WillieError(
            f"{url}: HTTP 404 Not Found. Check data.item and data.file_name in params.yaml"
        )
    if status == 429 or status >= 500:
        raise _TransientError(
            f"{url}: HTTP {status} {response.reason}; the server is busy or down, try again "
            f"later. {OFFLINE_HINT}"
        )
    raise WillieError(f"{url}: HTTP {status} {response.reason}")


def cache_dir() -> Path:
    """The persistent download cache: `$WILLIE_CACHE_DIR`, else `~/.cache/willie`."""
    return Path(os.environ.get("WILLIE_CACHE_DIR") or "~/.cache/willie").expanduser()


def _relative(name: str) -> PurePosixPath:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts:
        raise WillieError(f"refusing the file name {name!r}: it would leave the download cache")
    return path


def cached_path(item: str, name: str) -> Path:
    """Where the verified download of `item`'s file `name` is kept."""
    return cache_dir() / "downloads" / _relative(item) / _relative(name)


class _ByteProgress:
    """A rich bar of bytes, speed and ETA on stderr; silent when disabled."""

    def __init__(self, label: str, total: int | None, *, enabled: bool) -> None:
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=_console,
            disable=not enabled,
        )
        self._task = self._progress.add_task(label, total=total)

    def __enter__(self) -> _ByteProgress:
        self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._progress.stop()

    def restart_at(self, completed: int) -> None:
        # reset, not update: the bytes already on disk must not count towards the speed
        self._progress.reset(self._task, completed=completed)

    def advance(self, size: int) -> None:
        self._progress.advance(self._task, size)


def _range_start(response: requests.Response) -> int | None:
    """First byte of a 206 answer, from `Content-Range: bytes START-END/TOTAL`."""
    unit, _, span = response.headers.get("Content-Range", "").partition(" ")
    start = span.partition("-")[0]
    return int(start) if unit == "bytes" and start.isdigit() else None


def _body_chunks(response: requests.Response) -> Iterator[bytes]:
    """The body as it arrives: every byte received before a dropped connection is kept."""
    raw = response.raw
    # urllib3 2's `read(n)` discards a short last chunk when the connection drops; `read1`
    # returns what has arrived.
    read = getattr(raw, "read1", raw.read)
    while chunk := read(CHUNK_BYTES, decode_content=False):
        yield chunk


def _fetch_into(
    session: requests.Session,
    url: str,
    part: Path,
    *,
    size: int | None,
    timeout: float,
    bar: _ByteProgress,
) -> None:
    """One attempt: append the rest of `url` to `part`, from the bytes it already holds."""
    have = part.stat().st_size if part.exists() else 0
    if size is not None and have >= size:
        if have == size:
            return  # complete: the checksums decide
        part.unlink()  # longer than the file: not a prefix of it
        have = 0
    # identity: byte ranges of a compressed transfer would not be byte ranges of the file
    headers = {"Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
    with _get(session, url, headers=headers, timeout=timeout, stream=True) as response:
        if response.status_code == 416:
            return  # nothing after byte `have`: the part is complete, the checksums decide
        if response.status_code == 206 and _range_start(response) != have:
            part.unlink()
            raise _TransientError(f"{url}: the server resumed at the wrong byte; starting over")
        append = response.status_code == 206
        bar.restart_at(have if append else 0)
        expected = int(response.headers.get("Content-Length", -1))
        received = 0
        with part.open("ab" if append else "wb") as f:
            try:
                for chunk in _body_chunks(response):
                    f.write(chunk)
                    received += len(chunk)
                    bar.advance(len(chunk))
            except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as e:
                raise _TransientError(
                    f"the connection to {url} dropped after {have + received} bytes "
                    f"({_reason(e)}); they are kept in {part} and the next run resumes there"
                ) from e
        if received < expected:
            raise _TransientError(
                f"the connection to {url} closed after {have + received} bytes; they are kept "
                f"in {part} and the next run resumes there"
            )


def _mismatches(sums: Checksums, expected: ArchiveFile) -> list[str]:
    """What differs from the metadata: size, md5, sha1 (whichever the metadata gives)."""
    problems = []
    if expected.size is not None and sums.size != expected.size:
        problems.append(f"size expected {expected.size} bytes, got {sums.size}")
    if expected.md5 and sums.md5 != expected.md5.lower():
        problems.append(f"md5 expected {expected.md5}, got {sums.md5}")
    if expected.sha1 and sums.sha1 != expected.sha1.lower():
        problems.append(f"sha1 expected {expected.sha1}, got {sums.sha1}")
    return problems


def download_verified(
    session: requests.Session,
    cfg: DataConfig,
    file: ArchiveFile,
    *,
    progress: bool = True,
    retry_delay_s: float = 1.0,
) -> tuple[Path, Checksums]:
    """The cached, verified copy of `file` (downloaded or resumed as needed) and its checksums."""
    target = cached_path(cfg.item, file.name)
    if target.is_file():
        sums = file_checksums(target)
        if not _mismatches(sums, file):
            return target, sums
        if progress:
            _console.print(f"{target} no longer matches the metadata: downloading it again")
        target.unlink()

    url = download_url(cfg, file.name)
    part = target.with_name(target.name + ".part")
    part.parent.mkdir(parents=True, exist_ok=True)
    with _ByteProgress(target.name, file.size, enabled=progress) as bar:
        _with_retries(
            lambda: _fetch_into(session, url, part, size=file.size, timeout=cfg.timeout_s, bar=bar),
            retries=cfg.retries,
            delay_s=retry_delay_s,
        )
    sums = file_checksums(part)
    if problems := _mismatches(sums, file):
        part.unlink()
        raise WillieError(
            f"{url} does not match archive.org's metadata ({'; '.join(problems)}): "
            f"the download was corrupted, so it was removed ({part}). Run again to download "
            f"it afresh"
        )
    os.replace(part, target)
    return target, sums


def _link_or_copy(source: Path, dest: Path) -> None:
    """Hardlink where the file system allows (instant, no extra space), else copy."""
    try:
        os.link(source, dest)
    except OSError:
        shutil.copyfile(source, dest)


def _jsonable(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    return value


def file_entry(
    file: Path,
    sums: Checksums,
    info: VideoInfo,
    *,
    url: str | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One video's record in the manifest: where from, checksums, picture and sound."""
    entry: dict[str, Any] = {
        "file": file.name,
        "url": url,
        "bytes": sums.size,
        "md5": sums.md5,
        "sha1": sums.sha1,
        "sha256": sums.sha256,
        "fps": info.fps,
        "duration_s": info.duration_s,
        "width": info.width,
        "height": info.height,
        "frames": info.frames,
        "codec": info.codec,
        "audio": _jsonable(info.audio),  # {codec, sample_rate, channels}, or None: silent
    }
    return entry | {key: _jsonable(value) for key, value in (extra or {}).items()}


def _manifest(source: str, files: list[dict[str, Any]], **about: Any) -> dict[str, Any]:
    """`manifest.json`: the source, each file's entry, and the corpus totals."""
    return {
        "source": source,
        **about,
        "files": files,
        "total": {
            "files": len(files),
            "bytes": sum(f["bytes"] for f in files),
            "frames": sum(f["frames"] for f in files),
            "duration_s": round(sum(f["duration_s"] for f in files), 3),
            "with_audio": sum(f["audio"] is not None for f in files),
        },
    }


def manifest_of(raw_dir: Path, names: list[str], source: str = "file") -> dict[str, Any]:
    """The manifest `download` would write for videos already in `raw_dir` (benchmarks and
    tests link the shared footage there instead of copying it)."""
    paths = [raw_dir / name for name in names]
    return _manifest(source, [file_entry(p, file_checksums(p), probe(p)) for p in paths])


def _usable(path: Path, label: str, hint: str) -> VideoInfo:
    """The video's properties, or a VideoError naming it (`label`) and what to do."""
    try:
        return probe(path)
    except VideoError as e:
        raise VideoError(f"{label} is not a usable video ({e}); {hint}") from None


def _publish(
    raw_dir: Path, sources: list[Path], make_manifest: Callable[[Path], dict[str, Any]]
) -> dict[str, Any]:
    """Link every source into a fresh `raw_dir`, then write `make_manifest(that dir)`; all or
    nothing. Returns the manifest."""
    names = [p.name for p in sources]
    if len(set(names)) < len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise WillieError(
            f"data.path names two files called {', '.join(twice)}: data/raw keeps files by "
            "name, so rename one of them"
        )
    with atomic_path(raw_dir) as temp:
        temp.mkdir()
        for source in sources:
            _link_or_copy(source, temp / source.name)
        manifest = make_manifest(temp)
        write_json(temp / MANIFEST_FILE, manifest)
    return manifest


def _from_archive(
    cfg: DataConfig, raw_dir: Path, *, progress: bool, retry_delay_s: float
) -> dict[str, Any]:
    with requests.Session() as session:
        session.headers["User-Agent"] = USER_AGENT
        files = fetch_item_files(session, cfg, retry_delay_s=retry_delay_s)
        chosen = [pick_file(cfg.item, files, name) for name in cfg.file_names] or [
            pick_file(cfg.item, files)
        ]
        downloads = [
            download_verified(session, cfg, f, progress=progress, retry_delay_s=retry_delay_s)
            for f in chosen
        ]
    hint = "name other files of the item with data.file_name"
    infos = [
        _usable(cached, f"{f.name!r} of archive.org item {cfg.item!r}", hint)
        for f, (cached, _) in zip(chosen, downloads, strict=True)
    ]
    entries = [
        file_entry(cached, sums, info, url=download_url(cfg, f.name))
        for f, (cached, sums), info in zip(chosen, downloads, infos, strict=True)
    ]
    manifest = _manifest("archive.org", entries, item=cfg.item)
    return _publish(raw_dir, [cached for cached, _ in downloads], lambda _: manifest)


def local_videos(paths: list[str]) -> list[Path]:
    """`data.path` as video files: each path a file, or a directory of videos (sorted by name)."""
    videos: list[Path] = []
    for name in paths:
        path = Path(name).expanduser()
        if path.is_dir():
            found = sorted(
                p for p in path.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS
            )
            if not found:
                raise VideoError(
                    f"data.path = {name!r} is a directory with no video in it (looked for "
                    f"{', '.join(sorted(VIDEO_EXTENSIONS))})"
                )
            videos += found
        elif path.is_file():
            videos.append(path)
        else:
            raise VideoError(
                f"data.path = {name!r}: no such file or directory. Point data.path at the film: "
                "a file, a list of files or a directory "
                "(dvc exp run -S data.source=file -S data.path=/path/to/film.mp4)"
            )
    return videos


def _from_file(cfg: DataConfig, raw_dir: Path) -> dict[str, Any]:
    videos = local_videos(cfg.paths)
    hint = "data.path must name video files PyAV can decode (MP4, MKV, MOV, …)"
    infos = [_usable(v, f"data.path file {str(v)!r}", hint) for v in videos]  # all, first

    def manifest(temp: Path) -> dict[str, Any]:  # checksums of the copies, as stored
        files = [
            file_entry(temp / v.name, file_checksums(temp / v.name), info)
            for v, info in zip(videos, infos, strict=True)
        ]
        return _manifest("file", files)

    return _publish(raw_dir, videos, manifest)


def _from_synthetic(cfg: DataConfig, raw_dir: Path) -> dict[str, Any]:
    with atomic_path(raw_dir) as temp:
        temp.mkdir()
        video = temp / SYNTHETIC_FILE
        film = render_synthetic_film(video, seed=cfg.seed, seconds=cfg.synthetic_seconds)
        entry = file_entry(
            video,
            file_checksums(video),
            probe(video),
            extra={"picture_box": film.picture_box, "cut_frames": film.cut_frames},
        )
        manifest = _manifest("synthetic", [entry], seed=cfg.seed, seconds=cfg.synthetic_seconds)
        write_json(temp / MANIFEST_FILE, manifest)
    return manifest


def run_download(
    cfg: DataConfig,
    raw_dir: str | os.PathLike[str] = "data/raw",
    *,
    progress: bool = True,
    retry_delay_s: float = 1.0,
) -> dict[str, Any]:
    """Produce `raw_dir/<video>` and `raw_dir/manifest.json` from `cfg.source`; the manifest.

    `retry_delay_s` is the first back-off delay; it doubles with each retry (at most 60 s).
    """
    raw_dir = Path(raw_dir)
    if cfg.source == "archive.org":
        return _from_archive(cfg, raw_dir, progress=progress, retry_delay_s=retry_delay_s)
    if cfg.source == "file":
        return _from_file(cfg, raw_dir)
    return _from_synthetic(cfg, raw_dir)
