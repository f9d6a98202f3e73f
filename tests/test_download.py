"""The `download` stage against a real HTTP server on 127.0.0.1 that plays archive.org.

The server serves the real opening of the film (`../shared/data/`) with range support, counts
what it sends, and can misbehave on demand: drop the connection, corrupt a byte, answer 404/500.
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote

import pytest

from willie.checksums import file_checksums
from willie.config import DataConfig, parse_section
from willie.data.download import ArchiveFile, cached_path, pick_file, run_download
from willie.data.synthetic import render_synthetic_film
from willie.data.video import VideoError, probe
from willie.errors import WillieError

CLIP_SHA256 = "1064fe5d826b4542ac6986dadaddebfaffdab8cb2907dc4619c2b6bac6e9e6bd"
ITEM = "steamboat-test"
VIDEO_NAME = "Steamboat Willie (1928).mp4"  # a space, so the URL must be quoted


@pytest.fixture(scope="module")
def clip_bytes(shared_clip: Path) -> bytes:
    return shared_clip.read_bytes()


@dataclass
class FakeArchive:
    """What the fake archive.org serves, how it misbehaves, and what it has seen."""

    video: bytes
    url: str = ""
    drop_after: int | None = None  # first video request: close the connection after N bytes
    corrupt_byte_at: int | None = None
    video_status: int | None = None  # answer every video request with this HTTP status
    bytes_served: int = 0
    video_requests: list[dict[str, str]] = field(default_factory=list)

    def metadata(self) -> dict:
        return {
            "files": [
                {
                    "name": VIDEO_NAME,
                    "source": "original",
                    "format": "MPEG4",
                    "size": str(len(self.video)),
                    "md5": hashlib.md5(self.video).hexdigest(),
                    "sha1": hashlib.sha1(self.video).hexdigest(),
                },
                {"name": "Steamboat Willie (1928).ia.mp4", "source": "derivative", "size": "9"},
                {"name": f"{ITEM}_meta.xml", "source": "metadata", "size": "900"},
            ]
        }

    def body(self) -> bytes:
        if self.corrupt_byte_at is None:
            return self.video
        data = bytearray(self.video)
        data[self.corrupt_byte_at] ^= 0xFF
        return bytes(data)


def _handler(archive: FakeArchive) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            if self.path == f"/metadata/{ITEM}":
                self._send(200, json.dumps(archive.metadata()).encode(), {})
            elif self.path.startswith("/metadata/"):
                self._send(200, b"{}", {})  # archive.org's answer for an unknown item
            elif self.path == f"/download/{ITEM}/{quote(VIDEO_NAME)}":
                self._send_video()
            else:
                self.send_error(404)

        def _send(self, status: int, payload: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def _send_video(self) -> None:
            archive.video_requests.append(dict(self.headers))
            if archive.video_status is not None:
                self.send_error(archive.video_status)
                return
            body = archive.body()
            wanted = self.headers.get("Range")
            start = int(wanted.removeprefix("bytes=").partition("-")[0]) if wanted else 0
            if start >= len(body):
                self._send(416, b"", {"Content-Range": f"bytes */{len(body)}"})
                return
            self.send_response(206 if wanted else 200)
            if wanted:
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            self.send_header("Content-Length", str(len(body) - start))
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            payload = body[start:]
            if archive.drop_after is not None and len(archive.video_requests) == 1:
                payload = payload[: archive.drop_after]  # HTTP/1.0: the connection then closes
            self.wfile.write(payload)
            archive.bytes_served += len(payload)

    return Handler


@pytest.fixture
def archive(
    clip_bytes: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[FakeArchive]:
    monkeypatch.setenv("WILLIE_CACHE_DIR", str(tmp_path / "cache"))
    state = FakeArchive(video=clip_bytes)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()
    server.server_close()
    thread.join()


def archive_cfg(url: str, **overrides: object) -> DataConfig:
    return DataConfig(
        **{"archive_url": url, "item": ITEM, "retries": 2, "timeout_s": 5, **overrides}
    )


def download(cfg: DataConfig, raw_dir: Path) -> dict:
    return run_download(cfg, raw_dir, progress=False, retry_delay_s=0.01)


def cache_files(tmp_path: Path) -> list[Path]:
    return [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]


def test_download_is_identical_to_the_source_with_its_manifest(
    archive: FakeArchive, tmp_path: Path
) -> None:
    manifest = download(archive_cfg(archive.url), tmp_path / "raw")

    video = tmp_path / "raw" / VIDEO_NAME
    assert video.read_bytes() == archive.video
    assert json.loads((tmp_path / "raw" / "manifest.json").read_text()) == manifest
    assert manifest["source"] == "archive.org" and manifest["item"] == ITEM
    (entry,) = manifest["files"]
    assert entry["url"] == f"{archive.url}/download/{ITEM}/{quote(VIDEO_NAME)}"
    assert entry["file"] == VIDEO_NAME
    assert entry["bytes"] == manifest["total"]["bytes"] == len(archive.video)
    assert entry["md5"] == hashlib.md5(archive.video).hexdigest()
    assert entry["sha1"] == hashlib.sha1(archive.video).hexdigest()
    assert entry["sha256"] == CLIP_SHA256
    assert entry["fps"] == pytest.approx(29.97, abs=0.01)
    assert (entry["width"], entry["height"], entry["frames"]) == (640, 480, 210)
    assert entry["duration_s"] == pytest.approx(7.0, abs=0.1)
    assert entry["codec"] == "h264" and entry["audio"] is None  # the opening has no sound
    assert cache_files(tmp_path) == [cached_path(ITEM, VIDEO_NAME)]


def test_connection_dropped_midway_is_resumed_without_refetching(
    archive: FakeArchive, tmp_path: Path
) -> None:
    cut = len(archive.video) // 3
    archive.drop_after = cut

    run_download(archive_cfg(archive.url), tmp_path / "raw", progress=True, retry_delay_s=0.01)

    assert (tmp_path / "raw" / VIDEO_NAME).read_bytes() == archive.video
    assert archive.bytes_served == len(archive.video)
    assert len(archive.video_requests) == 2
    assert "Range" not in archive.video_requests[0]
    assert archive.video_requests[1]["Range"] == f"bytes={cut}-"


def test_part_left_by_a_killed_run_is_resumed(archive: FakeArchive, tmp_path: Path) -> None:
    have = 100_000
    part = cached_path(ITEM, VIDEO_NAME + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes(archive.video[:have])

    download(archive_cfg(archive.url), tmp_path / "raw")

    assert (tmp_path / "raw" / VIDEO_NAME).read_bytes() == archive.video
    assert archive.bytes_served == len(archive.video) - have
    assert [r["Range"] for r in archive.video_requests] == [f"bytes={have}-"]
    assert not part.exists()


def test_verified_cached_file_is_not_downloaded_again(archive: FakeArchive, tmp_path: Path) -> None:
    first = download(archive_cfg(archive.url), tmp_path / "raw")
    second = download(archive_cfg(archive.url), tmp_path / "raw")

    assert second == first
    assert len(archive.video_requests) == 1
    assert archive.bytes_served == len(archive.video)


def test_corrupted_download_is_removed_and_refused(archive: FakeArchive, tmp_path: Path) -> None:
    archive.corrupt_byte_at = 12_345

    with pytest.raises(WillieError, match="md5 expected") as error:
        download(archive_cfg(archive.url), tmp_path / "raw")

    assert "removed" in str(error.value)
    assert cache_files(tmp_path) == []
    assert not (tmp_path / "raw").exists()


def test_missing_file_is_a_clear_404_without_retries(archive: FakeArchive, tmp_path: Path) -> None:
    archive.video_status = 404

    with pytest.raises(WillieError, match="404") as error:
        download(archive_cfg(archive.url), tmp_path / "raw")

    assert quote(VIDEO_NAME) in str(error.value)
    assert "data.item" in str(error.value) and "data.file_name" in str(error.value)
    assert len(archive.video_requests) == 1


def test_server_error_fails_after_the_retries(archive: FakeArchive, tmp_path: Path) -> None:
    archive.video_status = 500

    with pytest.raises(WillieError, match="HTTP 500") as error:
        download(archive_cfg(archive.url, retries=2), tmp_path / "raw")

    assert "3 attempts" in str(error.value)
    assert len(archive.video_requests) == 3
    assert not (tmp_path / "raw").exists()


def test_unknown_item_is_a_clear_error(archive: FakeArchive, tmp_path: Path) -> None:
    with pytest.raises(WillieError, match=r"no item 'no-such-item'.*data\.item"):
        download(archive_cfg(archive.url, item="no-such-item"), tmp_path / "raw")


def test_unreachable_archive_suggests_a_local_file_or_synthetic(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]

    with pytest.raises(WillieError, match="Connection refused") as error:
        download(archive_cfg(f"http://127.0.0.1:{closed_port}", retries=1), tmp_path / "raw")

    assert "data.source=file" in str(error.value)
    assert "data.source=synthetic" in str(error.value)


def original(name: str, size: int) -> ArchiveFile:
    return ArchiveFile(name=name, source="original", size=size)


def derivative(name: str, size: int) -> ArchiveFile:
    return ArchiveFile(name=name, source="derivative", size=size)


def test_pick_prefers_an_original_video_over_a_larger_derivative() -> None:
    files = [derivative("film.ia.mp4", 900), original("film.mpeg", 500), original("notes.txt", 999)]
    assert pick_file("item", files).name == "film.mpeg"


def test_pick_takes_the_largest_original_video() -> None:
    files = [original("small.mp4", 10), original("big.MKV", 30), original("mid.avi", 20)]
    assert pick_file("item", files).name == "big.MKV"


def test_pick_falls_back_to_the_largest_derivative_video() -> None:
    files = [original("film.pdf", 50), derivative("a.ia.mp4", 10), derivative("b.ogv", 20)]
    assert pick_file("item", files).name == "b.ogv"


def test_pick_honours_file_name() -> None:
    files = [original("big.mp4", 30), derivative("small.ia.mp4", 10)]
    assert pick_file("item", files, file_name="small.ia.mp4").name == "small.ia.mp4"


def test_unknown_file_name_lists_the_video_files() -> None:
    files = [original("big.mp4", 30), derivative("small.ogv", 10), original("x_meta.xml", 1)]
    with pytest.raises(WillieError, match=r"data\.file_name = 'nope\.mp4'") as error:
        pick_file("item", files, file_name="nope.mp4")
    assert "'big.mp4', 'small.ogv'" in str(error.value)
    assert "x_meta.xml" not in str(error.value)


def test_item_without_video_is_refused() -> None:
    with pytest.raises(WillieError, match="no video file"):
        pick_file("item", [original("book.pdf", 10)])


def test_metadata_entry_sizes_are_parsed() -> None:
    entry = {"name": "a.mp4", "source": "original", "size": "1234", "md5": "ab"}
    assert ArchiveFile.from_metadata(entry) == ArchiveFile("a.mp4", "original", 1234, "ab", None)
    assert ArchiveFile.from_metadata({"name": "b.mp4"}).size is None


def test_checksums_match_hashlib(tmp_path: Path) -> None:
    data = bytes(range(256)) * 10_000  # spans several 1 MiB chunks
    (tmp_path / "blob").write_bytes(data)
    sums = file_checksums(tmp_path / "blob")
    assert sums.size == len(data)
    assert sums.md5 == hashlib.md5(data).hexdigest()
    assert sums.sha1 == hashlib.sha1(data).hexdigest()
    assert sums.sha256 == hashlib.sha256(data).hexdigest()


def test_file_source_copies_the_video_with_its_checksums(shared_clip: Path, tmp_path: Path) -> None:
    manifest = download(DataConfig(source="file", path=str(shared_clip)), tmp_path / "raw")

    assert (tmp_path / "raw" / shared_clip.name).read_bytes() == shared_clip.read_bytes()
    assert manifest["source"] == "file" and "item" not in manifest
    (entry,) = manifest["files"]
    assert entry["url"] is None
    assert entry["file"] == shared_clip.name
    assert entry["sha256"] == CLIP_SHA256
    assert entry["frames"] == 210


def test_file_source_missing_path_names_the_key(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.mp4"
    with pytest.raises(WillieError, match=r"data\.path.*no such file or directory"):
        download(DataConfig(source="file", path=str(missing)), tmp_path / "raw")


def test_file_source_refuses_a_non_video(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("not a film\n")
    with pytest.raises(VideoError, match=r"data\.path.*not a usable video"):
        download(DataConfig(source="file", path=str(notes)), tmp_path / "raw")
    assert not (tmp_path / "raw").exists()


def test_failed_run_leaves_the_previous_raw_dir_untouched(
    shared_clip: Path, tmp_path: Path
) -> None:
    raw = tmp_path / "raw"
    good = download(DataConfig(source="file", path=str(shared_clip)), raw)
    notes = tmp_path / "notes.txt"
    notes.write_text("not a film\n")

    with pytest.raises(VideoError):
        download(DataConfig(source="file", path=str(notes)), raw)

    assert json.loads((raw / "manifest.json").read_text()) == good
    assert sorted(p.name for p in raw.iterdir()) == ["manifest.json", shared_clip.name]
    assert list(tmp_path.glob(".raw.tmp-*")) == []


def test_synthetic_source_writes_a_probeable_film(tmp_path: Path) -> None:
    manifest = download(
        DataConfig(source="synthetic", seed=3, synthetic_seconds=1.0), tmp_path / "raw"
    )

    info = probe(tmp_path / "raw" / "synthetic_willie.mp4")
    assert manifest["source"] == "synthetic"
    assert (manifest["seed"], manifest["seconds"]) == (3, 1.0)
    (entry,) = manifest["files"]
    assert entry["file"] == "synthetic_willie.mp4"
    assert entry["frames"] == info.frames == 24
    assert entry["codec"] == "h264"
    assert "picture_box" in entry and "cut_frames" in entry
    assert entry["sha256"] == file_checksums(tmp_path / "raw" / "synthetic_willie.mp4").sha256


@pytest.fixture(scope="module")
def films(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory of two short synthetic films and a file that is not a video."""
    folder = tmp_path_factory.mktemp("films")
    render_synthetic_film(folder / "b_second.mp4", seed=2, seconds=1.0)
    render_synthetic_film(folder / "a_first.mp4", seed=1, seconds=1.5)
    (folder / "notes.txt").write_text("not a film\n")
    return folder


def test_a_directory_is_every_video_in_it_by_name(films: Path, tmp_path: Path) -> None:
    manifest = download(DataConfig(source="file", path=str(films)), tmp_path / "raw")
    assert [f["file"] for f in manifest["files"]] == ["a_first.mp4", "b_second.mp4"]
    assert [f["frames"] for f in manifest["files"]] == [36, 24]
    assert manifest["total"] == {
        "files": 2,
        "bytes": sum(f["bytes"] for f in manifest["files"]),
        "frames": 60,
        "duration_s": pytest.approx(2.5, abs=0.05),
        "with_audio": 2,  # synthetic films carry their soundtrack
    }
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == [
        "a_first.mp4",
        "b_second.mp4",
        "manifest.json",
    ]


def test_a_list_keeps_its_order(films: Path, tmp_path: Path) -> None:
    paths = [str(films / "b_second.mp4"), str(films / "a_first.mp4")]
    manifest = download(DataConfig(source="file", path=paths), tmp_path / "raw")
    assert [f["file"] for f in manifest["files"]] == ["b_second.mp4", "a_first.mp4"]
    for entry in manifest["files"]:
        assert entry["sha256"] == file_checksums(films / entry["file"]).sha256


def test_one_bad_file_is_named_and_nothing_is_written(films: Path, tmp_path: Path) -> None:
    paths = [str(films / "a_first.mp4"), str(films / "notes.txt")]
    with pytest.raises(VideoError, match=r"data\.path file '.*notes\.txt' is not a usable video"):
        download(DataConfig(source="file", path=paths), tmp_path / "raw")
    assert not (tmp_path / "raw").exists()
    with pytest.raises(VideoError, match=r"data\.path = '.*gone\.mp4': no such file"):
        download(
            DataConfig(source="file", path=[paths[0], str(films / "gone.mp4")]), tmp_path / "raw"
        )
    assert not (tmp_path / "raw").exists()


def test_two_files_of_one_name_are_refused(films: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "a_first.mp4").symlink_to(films / "a_first.mp4")
    paths = [str(films / "a_first.mp4"), str(other / "a_first.mp4")]
    with pytest.raises(WillieError, match=r"two files called a_first\.mp4: .* rename one"):
        download(DataConfig(source="file", path=paths), tmp_path / "raw")
    assert not (tmp_path / "raw").exists()


def test_an_empty_list_or_a_folder_without_videos_is_refused(tmp_path: Path) -> None:
    with pytest.raises(WillieError, match=r"data\.path = \[\]: an empty list"):
        parse_section("data", {"source": "file", "path": []}, DataConfig)
    (tmp_path / "empty").mkdir()
    with pytest.raises(VideoError, match="a directory with no video in it"):
        download(DataConfig(source="file", path=str(tmp_path / "empty")), tmp_path / "raw")


def test_the_manifest_describes_each_files_sound(
    shared_clip: Path, shared_clip_with_sound: Path, tmp_path: Path
) -> None:
    paths = [str(shared_clip), str(shared_clip_with_sound)]
    manifest = download(DataConfig(source="file", path=paths), tmp_path / "raw")
    silent, sound = manifest["files"]
    assert silent["audio"] is None
    assert sound["audio"] == {"codec": "aac", "sample_rate": 48000, "channels": 2}
    assert (sound["width"], sound["height"]) == (854, 480)
    assert sound["fps"] == pytest.approx(23.976, abs=0.01)
    assert manifest["total"]["with_audio"] == 1
    assert manifest["total"]["duration_s"] == pytest.approx(7.0 + 18.72, abs=0.1)


def test_archive_file_names_are_all_checked_before_any_download(
    archive: FakeArchive, tmp_path: Path
) -> None:
    cfg = archive_cfg(archive.url, file_name=[VIDEO_NAME, "reel2.mp4"])
    with pytest.raises(WillieError, match=r"data\.file_name = 'reel2\.mp4' is not a file"):
        download(cfg, tmp_path / "raw")
    assert archive.video_requests == [] and not (tmp_path / "raw").exists()
