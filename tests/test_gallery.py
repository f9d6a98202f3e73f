import json
from collections.abc import Callable
from fractions import Fraction
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import av
import numpy as np
import pytest
from PIL import Image

import willie.generation.gallery
from willie.data.video import probe
from willie.errors import WillieError
from willie.generation.gallery import (
    SHEET_COLUMNS,
    SHEET_GAP,
    Sample,
    mark_prompt_frames,
    prompt_border_width,
    write_gallery,
)

PAPER, INK = 235, 20  # the film's off-white background and black lines


def moving_shapes(frames: int, height: int, width: int, *, phase: float = 0.0) -> np.ndarray:
    """[T, H, W] uint8: a disc crossing the frame and a square bobbing, away from the edges."""
    y, x = np.indices((height, width))
    video = np.full((frames, height, width), PAPER, dtype=np.uint8)
    r = min(height, width) / 8
    for t in range(frames):
        s = t / max(frames - 1, 1)
        cx, cy = width * (0.25 + 0.5 * s), height * (0.5 + 0.2 * np.sin(2 * np.pi * (s + phase)))
        video[t][(x - cx) ** 2 + (y - cy) ** 2 < r**2] = INK
        top = int(height * (0.2 + 0.1 * np.cos(2 * np.pi * (s + phase))))
        video[t, top : top + height // 6, width // 8 : width // 8 + width // 6] = 128
    return video


def make_samples() -> list[Sample]:
    prompted = moving_shapes(24, 64, 64)
    return [
        Sample(
            name="sample_000",
            frames=prompted,
            prompt_frames=8,
            settings={"seed": np.int64(0), "temperature": 0.9, "top_k": 64, "tokens/s": 123.456},
            prompt=prompted[:8].copy(),
        ),
        Sample(
            name="sample_001",
            frames=moving_shapes(17, 64, 64, phase=0.5),
            prompt_frames=0,
            settings={"seed": 1, "temperature": 1.0, "top_p": 0.95, "note": "<unconditional>"},
        ),
        Sample(
            name="wide-clip",
            frames=moving_shapes(20, 32, 48, phase=0.25),
            prompt_frames=3,
            settings={},
        ),
    ]


@pytest.fixture(scope="module")
def gallery(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    out = tmp_path_factory.mktemp("stages") / "samples"
    return out, write_gallery(out, make_samples())


def decode_gray(path: Path) -> tuple[list[np.ndarray], Fraction | None]:
    """The MP4's frames, gray, and its video stream's average rate (read while open: PyAV ≥
    18.1 refuses a stream's attributes once its container is closed)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [frame.to_ndarray(format="gray") for frame in container.decode(stream)]
        return frames, stream.average_rate


def test_gallery_returns_every_file_at_its_final_path(gallery: tuple[Path, dict]) -> None:
    out, written = gallery
    assert sorted(written) == sorted(p.name for p in out.iterdir())
    assert all(path == out / name and path.is_file() for name, path in written.items())
    assert {"index.html", "contact_sheet.png", "samples.json", "sample_000_prompt.gif"} <= set(
        written
    )
    assert "sample_001_prompt.gif" not in written


def test_mp4s_are_h264_with_every_frame_at_24fps(gallery: tuple[Path, dict]) -> None:
    out, _ = gallery
    for sample in make_samples():
        path = out / f"{sample.name}.mp4"
        (frames, rate), stream = decode_gray(path), probe(path)
        assert stream.codec == "h264"
        assert len(frames) == len(sample.frames)
        assert (stream.height, stream.width) == sample.frames.shape[1:]
        assert rate == 24
        # Generated frames survive the encode closely (crf 18), so the clip is the clip.
        last = frames[-1].astype(int) - sample.frames[-1]
        assert np.abs(last).mean() < 4


def test_gifs_have_every_frame(gallery: tuple[Path, dict]) -> None:
    out, _ = gallery
    for sample in make_samples():
        with Image.open(out / f"{sample.name}.gif") as gif:
            assert gif.n_frames == len(sample.frames)
            assert gif.size == (sample.frames.shape[2], sample.frames.shape[1])
    with Image.open(out / "sample_000_prompt.gif") as gif:
        assert gif.n_frames == 8


def test_prompt_frames_wear_a_dashed_border_generated_frames_none(
    gallery: tuple[Path, dict],
) -> None:
    out, _ = gallery
    frames, _ = decode_gray(out / "sample_000.mp4")
    b = prompt_border_width(64, 64)
    for t in (0, 7):  # prompt frames: black and white dashes along the edge
        edge = frames[t][:b].astype(int)
        assert edge.min() < 60 and edge.max() > 200, t
    for t in (8, 23):  # generated frames: the edge is plain background
        assert frames[t][:b].min() > 200, t


def test_mark_prompt_frames_touches_only_the_border_of_prompt_frames() -> None:
    video = moving_shapes(10, 64, 64)
    marked = mark_prompt_frames(video, 4)
    b = prompt_border_width(64, 64)
    assert np.array_equal(marked[4:], video[4:])
    assert np.array_equal(marked[:, b:-b, b:-b], video[:, b:-b, b:-b])
    for edge in (marked[0, :b], marked[0, -b:], marked[0, :, :b], marked[0, :, -b:]):
        assert set(np.unique(edge)) == {0, 255}
    assert np.array_equal(mark_prompt_frames(video, 0), video)
    assert not np.shares_memory(mark_prompt_frames(video, 0), video)


def test_contact_sheet_is_a_gray_grid_one_row_per_sample(gallery: tuple[Path, dict]) -> None:
    out, _ = gallery
    samples = make_samples()
    with Image.open(out / "contact_sheet.png") as sheet:
        assert sheet.mode == "L"
        widest = max(s.frames.shape[2] for s in samples)
        assert sheet.size == (
            SHEET_GAP + SHEET_COLUMNS * (widest + SHEET_GAP),
            SHEET_GAP + sum(s.frames.shape[1] + SHEET_GAP for s in samples),
        )
        pixels = np.asarray(sheet)
    # The second row (no prompt), first and last cells: the clip's first and last frames.
    top = SHEET_GAP + 64 + SHEET_GAP
    last = SHEET_GAP + (SHEET_COLUMNS - 1) * (64 + SHEET_GAP)
    assert np.array_equal(pixels[top : top + 64, SHEET_GAP : SHEET_GAP + 64], samples[1].frames[0])
    assert np.array_equal(pixels[top : top + 64, last : last + 64], samples[1].frames[-1])
    # The first row starts on a prompt frame, marked as in the videos.
    first = pixels[SHEET_GAP : SHEET_GAP + 64, SHEET_GAP : SHEET_GAP + 64]
    assert np.array_equal(first, mark_prompt_frames(samples[0].frames, 8)[0])


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.tags: set[str] = set()
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.links += [value or "" for name, value in attrs if name in ("src", "href")]

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_index_html_opens_from_disk_with_relative_links(gallery: tuple[Path, dict]) -> None:
    out, _ = gallery
    parser = _Links()
    parser.feed((out / "index.html").read_text(encoding="utf-8"))
    assert parser.links
    for link in parser.links:
        parts = urlsplit(link)
        assert not parts.scheme and not parts.netloc and not link.startswith("/"), link
        target = (out / unquote(parts.path)).resolve()
        assert target.parent == out.resolve() and target.is_file(), link
    linked = set(parser.links)
    assert "contact_sheet.png" in linked and "sample_000_prompt.gif" in linked
    for name in ("sample_000", "sample_001", "wide-clip"):
        assert {f"{name}.gif", f"{name}.mp4"} <= linked
    assert {"video", "img", "table"} <= parser.tags
    assert not {"script", "link"} & parser.tags  # nothing external, nothing to fetch
    text = "".join(parser.text)
    assert "<unconditional>" in text  # escaped in the file, shown as typed
    assert "123.5" in text and "tokens/s" in text


def test_samples_json_lists_every_sample(gallery: tuple[Path, dict]) -> None:
    out, _ = gallery
    manifest = json.loads((out / "samples.json").read_text())
    assert manifest["fps"] == 24 and manifest["contact_sheet"] == "contact_sheet.png"
    first, second, wide = manifest["samples"]
    assert first == {
        "name": "sample_000",
        "files": {
            "mp4": "sample_000.mp4",
            "gif": "sample_000.gif",
            "prompt_gif": "sample_000_prompt.gif",
        },
        "frames": 24,
        "size": [64, 64],
        "prompt_frames": 8,
        "sound": False,
        "settings": {"seed": 0, "temperature": 0.9, "top_k": 64, "tokens/s": 123.456},
    }
    assert second["files"] == {"mp4": "sample_001.mp4", "gif": "sample_001.gif"}
    assert (second["frames"], second["prompt_frames"]) == (17, 0)
    assert (wide["size"], wide["prompt_frames"], wide["settings"]) == ([32, 48], 3, {})


def _gray(t: int = 4, h: int = 16, w: int = 16) -> np.ndarray:
    return np.zeros((t, h, w), dtype=np.uint8)


BAD_INPUTS: dict[str, tuple[Callable[[], list[Sample]], str]] = {
    "empty": (lambda: [], "at least one"),
    "float frames": (lambda: [Sample("a", _gray().astype(np.float32), 0, {})], "uint8"),
    "2-D frames": (lambda: [Sample("a", _gray()[0], 0, {})], r"\[T, H, W\]"),
    "no frames": (lambda: [Sample("a", _gray(t=0), 0, {})], "non-empty"),
    "odd height": (lambda: [Sample("a", _gray(h=15), 0, {})], "even"),
    "odd width": (lambda: [Sample("a", _gray(w=17), 0, {})], "even"),
    "duplicate names": (
        lambda: [Sample("a", _gray(), 0, {}), Sample("a", _gray(), 0, {})],
        "duplicate",
    ),
    "path in name": (lambda: [Sample("../a", _gray(), 0, {})], "file stem"),
    "clashing files": (
        lambda: [
            Sample("a", _gray(), 1, {}, prompt=_gray(t=1)),
            Sample("a_prompt", _gray(), 0, {}),
        ],
        "a_prompt.gif",
    ),
    "too many prompt frames": (lambda: [Sample("a", _gray(), 5, {})], "outside 0..4"),
    "prompt of another size": (
        lambda: [Sample("a", _gray(), 1, {}, prompt=_gray(t=1, w=32))],
        "resize",
    ),
    "settings not JSON": (lambda: [Sample("a", _gray(), 0, {"f": object()})], "settings"),
    "NaN setting": (lambda: [Sample("a", _gray(), 0, {"x": float("nan")})], "finite"),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_raises_and_leaves_the_gallery_untouched(case: str, tmp_path: Path) -> None:
    out = tmp_path / "samples"
    write_gallery(out, make_samples()[1:2])
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    build, message = BAD_INPUTS[case]
    with pytest.raises(WillieError, match=message):
        write_gallery(out, build())
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith("mlflow")] == ["samples"]


def test_bad_fps_raises(tmp_path: Path) -> None:
    for fps in (0, -24.0, float("inf")):
        with pytest.raises(WillieError, match="fps"):
            write_gallery(tmp_path / "samples", make_samples()[1:2], fps=fps)
    assert not (tmp_path / "samples").exists()


def test_second_write_replaces_the_first_as_a_whole(tmp_path: Path) -> None:
    out = tmp_path / "samples"
    write_gallery(out, make_samples())
    second = [Sample("again", moving_shapes(12, 32, 32), 0, {"seed": 7})]
    written = write_gallery(out, second, fps=12.0)
    files = {"again.mp4", "again.gif", "contact_sheet.png", "index.html", "samples.json"}
    assert set(written) == files
    assert {p.name for p in out.iterdir()} == files  # nothing left of the first gallery
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith("mlflow")] == ["samples"]
    _, rate = decode_gray(out / "again.mp4")
    assert rate == 12
    assert json.loads((out / "samples.json").read_text())["samples"][0]["name"] == "again"


def test_failure_while_writing_keeps_the_previous_gallery(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "samples"
    write_gallery(out, make_samples()[1:2])
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    # after the first MP4 is written
    monkeypatch.setattr(willie.generation.gallery, "write_gif", disk_full)
    with pytest.raises(OSError, match="No space"):
        write_gallery(out, make_samples())
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith("mlflow")] == ["samples"]
