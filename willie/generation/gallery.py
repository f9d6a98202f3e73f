"""The `sample` stage's output: generated clips as MP4 + GIF, a contact sheet and a static gallery.

`write_gallery` publishes one directory as a whole (built in a temporary sibling, then renamed),
so a failed run leaves the previous gallery intact and a reader never sees half of one:

    <name>.mp4            H.264 (yuv420p) at `fps`, prompt frames marked
    <name>.gif            the same frames as a looping GIF
    <name>_prompt.gif     the real footage passed as `Sample.prompt`, where given
    <name>.tokens.npy     the token ids it was decoded from, where given (for `evaluate`)
    contact_sheet.png     one row per sample, `SHEET_COLUMNS` evenly spaced frames each
    index.html            opens from disk: relative links, no external CSS/JS/fonts
    samples.json          names, files, frame counts, sizes, prompt frames and settings

Prompt frames (real footage the model continued) wear a dashed black-and-white border, drawn
over their outermost pixels; generated frames are left untouched. Both colours alternate, so
the border shows on the film's white backgrounds and on its black ones alike.
"""

from __future__ import annotations

import html
import io
import json
import math
import numbers
import os
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from willie.atomic import atomic_path, write_bytes, write_json
from willie.data.video import write_gif, write_mp4
from willie.errors import WillieError

SHEET_COLUMNS = 8  # frames per contact-sheet row
SHEET_GAP = 4  # pixels between contact-sheet cells and around the edge
SHEET_BACKGROUND = 128  # mid gray: a gap stays visible beside black and white frames
GALLERY_WIDTH = 256  # CSS pixels a clip is shown at, at least (small clips scale up, pixelated)

_NAME = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True)
class Sample:
    """One generated clip and what produced it; validated on construction."""

    name: str  # file stem, e.g. "sample_000"
    frames: np.ndarray  # [T, H, W] uint8 gray, prompt frames included; H and W even (H.264)
    prompt_frames: int  # how many leading frames are real footage (0: unconditional)
    settings: dict[str, Any]  # seed, temperature, top_k, top_p, tokens/s…: JSON values
    prompt: np.ndarray | None = None  # [P, H, W] uint8 real footage, shown beside the sample
    tokens: np.ndarray | None = None  # [n] the token ids it decodes from (latent frames × h × w)
    audio: np.ndarray | None = None  # [S] float in [-1, 1]: its sound (None: silent)
    audio_rate: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise WillieError(
                f"sample name {self.name!r} is not a file stem: use letters, digits, '_' and '-'"
            )
        _check_gray_video(f"sample {self.name!r}: frames", self.frames)
        t, h, w = self.frames.shape
        if h % 2 or w % 2:
            raise WillieError(
                f"sample {self.name!r}: frames are {h}×{w} (H×W); H.264 (yuv420p) needs an even "
                "height and width: crop or pad a row/column before writing the gallery"
            )
        if isinstance(self.prompt_frames, bool) or not isinstance(self.prompt_frames, int):
            raise WillieError(
                f"sample {self.name!r}: prompt_frames must be an int, got {self.prompt_frames!r}"
            )
        if not 0 <= self.prompt_frames <= t:
            raise WillieError(
                f"sample {self.name!r}: prompt_frames={self.prompt_frames} is outside 0..{t} "
                f"(the clip has {t} frames)"
            )
        if self.prompt is not None:
            _check_gray_video(f"sample {self.name!r}: prompt", self.prompt)
            if self.prompt.shape[1:] != (h, w):
                raise WillieError(
                    f"sample {self.name!r}: prompt frames are {self.prompt.shape[1]}×"
                    f"{self.prompt.shape[2]} but the clip is {h}×{w}; resize the real footage "
                    "to the clip's size"
                )
        if self.audio is not None and (
            not isinstance(self.audio, np.ndarray) or self.audio.ndim != 1 or self.audio_rate <= 0
        ):
            raise WillieError(
                f"sample {self.name!r}: audio must be a 1-D float array with its audio_rate > 0"
            )
        is_dict = isinstance(self.settings, dict)
        if not is_dict or not all(isinstance(key, str) for key in self.settings):
            raise WillieError(f"sample {self.name!r}: settings must be a dict with str keys")
        _plain_settings(self.name, self.settings)  # fails here, not halfway through the writes

    @property
    def height(self) -> int:
        return int(self.frames.shape[1])

    @property
    def width(self) -> int:
        return int(self.frames.shape[2])

    def files(self) -> dict[str, str]:
        """Kind → file name inside the gallery directory."""
        files = {"mp4": f"{self.name}.mp4", "gif": f"{self.name}.gif"}
        if self.prompt is not None:
            files["prompt_gif"] = f"{self.name}_prompt.gif"
        if self.tokens is not None:
            files["tokens"] = f"{self.name}.tokens.npy"
        return files


def _check_gray_video(what: str, frames: object) -> None:
    if not isinstance(frames, np.ndarray):
        raise WillieError(f"{what} must be a numpy array, got {type(frames).__name__}")
    if frames.dtype != np.uint8 or frames.ndim != 3 or 0 in frames.shape:
        raise WillieError(
            f"{what} must be non-empty uint8 [T, H, W] gray frames, "
            f"got {frames.dtype} of shape {tuple(frames.shape)}"
        )


def _json_value(value: object) -> Any:
    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not a JSON value")


def _plain_settings(name: str, settings: dict[str, Any]) -> dict[str, Any]:
    """The settings as plain JSON values (numpy scalars → Python numbers)."""
    try:
        return json.loads(json.dumps(settings, default=_json_value, allow_nan=False))
    except (TypeError, ValueError) as e:
        raise WillieError(
            f"sample {name!r}: settings must hold finite numbers, strings, bools, None, lists "
            f"and dicts (they go to samples.json): {e}"
        ) from None


def prompt_border_width(height: int, width: int) -> int:
    """The marker's thickness: 2 px on a 64-px clip, growing with the frame."""
    return max(2, min(height, width) // 32)


def mark_prompt_frames(frames: np.ndarray, prompt_frames: int) -> np.ndarray:
    """A copy of [T, H, W] frames whose first `prompt_frames` wear a dashed black/white border."""
    marked = frames.copy()
    if prompt_frames == 0:
        return marked
    _, h, w = frames.shape
    b = prompt_border_width(h, w)
    ring = np.zeros((h, w), dtype=bool)
    ring[:b], ring[-b:], ring[:, :b], ring[:, -b:] = True, True, True, True
    # Stripes along the diagonal: dashes of length 4b along every edge, corners included.
    y, x = np.indices((h, w))
    dashes = np.where((y + x) // (4 * b) % 2 == 0, 255, 0).astype(np.uint8)
    marked[:prompt_frames, ring] = dashes[ring]
    return marked


def sheet_frame_indices(num_frames: int, columns: int = SHEET_COLUMNS) -> np.ndarray:
    """`columns` frame indices spread evenly from the first frame to the last (repeats if few)."""
    return np.linspace(0, num_frames - 1, columns).round().astype(int)


def contact_sheet(videos: list[np.ndarray], columns: int = SHEET_COLUMNS) -> np.ndarray:
    """[rows, cols] uint8: one row per [T, H, W] video, `columns` evenly spaced frames across.

    Cells are as wide as the widest video; each row is as tall as its own video.
    """
    cell_w = max(v.shape[2] for v in videos)
    width = SHEET_GAP + columns * (cell_w + SHEET_GAP)
    height = SHEET_GAP + sum(v.shape[1] + SHEET_GAP for v in videos)
    sheet = np.full((height, width), SHEET_BACKGROUND, dtype=np.uint8)
    top = SHEET_GAP
    for video in videos:
        _, h, w = video.shape
        for column, index in enumerate(sheet_frame_indices(len(video), columns)):
            left = SHEET_GAP + column * (cell_w + SHEET_GAP)
            sheet[top : top + h, left : left + w] = video[index]
        top += h + SHEET_GAP
    return sheet


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def _format_setting(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list | dict):
        return json.dumps(value)
    return str(value)


_CSS = """
body { font-family: sans-serif; margin: 2em; background: #fafafa; color: #111; }
img, video { image-rendering: pixelated; display: block; }
.clips { display: flex; gap: 1em; flex-wrap: wrap; align-items: flex-start; }
.clips figure { margin: 0; }
figcaption { font-size: 0.85em; color: #444; }
table { border-collapse: collapse; font-size: 0.9em; margin-top: 0.5em; }
td, th { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: left; }
section { margin: 2em 0; padding-top: 1em; border-top: 1px solid #ddd; }
"""


def _sample_html(sample: Sample, settings: dict[str, Any], fps: float) -> str:
    e = html.escape
    files = sample.files()
    scale = max(1, math.ceil(GALLERY_WIDTH / sample.width))
    size = f'width="{sample.width * scale}" height="{sample.height * scale}"'
    clips = [
        f'<figure><img src="{e(files["gif"])}" {size} alt="{e(sample.name)} (GIF)">'
        "<figcaption>GIF</figcaption></figure>",
        f'<figure><video src="{e(files["mp4"])}" {size} controls loop '
        f"{'' if sample.audio is not None else 'muted '}playsinline "
        f'preload="metadata"></video><figcaption><a href="{e(files["mp4"])}">'
        f"{e(files['mp4'])}</a> (H.264{' + AAC sound' if sample.audio is not None else ''})"
        "</figcaption></figure>",
    ]
    if "prompt_gif" in files:
        clips.append(
            f'<figure><img src="{e(files["prompt_gif"])}" {size} '
            f'alt="{e(sample.name)}: real footage">'
            "<figcaption>real footage (prompt)</figcaption></figure>"
        )
    rows = [
        ("frames", f"{len(sample.frames)} ({len(sample.frames) / fps:.2f} s at {fps:g} fps)"),
        ("size", f"{sample.height}×{sample.width} (H×W)"),
        ("prompt frames", str(sample.prompt_frames)),
        *((key, _format_setting(value)) for key, value in settings.items()),
    ]
    table = "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in rows)
    return (
        f'<section id="{e(sample.name)}"><h2>{e(sample.name)}</h2>'
        f'<div class="clips">{"".join(clips)}</div><table>{table}</table></section>'
    )


def _index_html(
    title: str, samples: list[Sample], settings: list[dict[str, Any]], fps: float, sheet_w: int
) -> str:
    e = html.escape
    sheet_scale = max(1, 1024 // sheet_w)
    legend = (
        "Frames with a dashed black-and-white border are real footage (the prompt the model "
        "continued); the rest is generated."
    )
    body = "\n".join(_sample_html(s, st, fps) for s, st in zip(samples, settings, strict=True))
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{e(title)}</title>
<style>{_CSS}</style>
</head>
<body>
<h1>{e(title)}</h1>
<p>{len(samples)} clips at {fps:g} fps. {e(legend)}
Details in <a href="samples.json">samples.json</a>.</p>
<h2>Contact sheet</h2>
<p>One row per clip, {SHEET_COLUMNS} evenly spaced frames from first to last.</p>
<img src="contact_sheet.png" width="{sheet_w * sheet_scale}" alt="contact sheet">
{body}
</body>
</html>
"""


def _check_samples(samples: list[Sample], fps: float) -> None:
    if not samples:
        raise WillieError("no samples to write: the gallery needs at least one Sample")
    for sample in samples:
        if not isinstance(sample, Sample):
            raise WillieError(f"expected Sample objects, got {type(sample).__name__}")
    is_number = isinstance(fps, numbers.Real) and not isinstance(fps, bool)
    if not (is_number and math.isfinite(fps) and fps > 0):
        raise WillieError(f"fps must be a positive number, got {fps!r}")
    names = [s.name for s in samples]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise WillieError(f"duplicate sample names {duplicates}: every sample needs its own name")
    owner: dict[str, str] = {}
    reserved = {"contact_sheet.png", "index.html", "samples.json"}
    for sample in samples:
        for file in sample.files().values():
            if file in owner:
                raise WillieError(
                    f"sample {sample.name!r}: its file {file} is also written for sample "
                    f"{owner[file]!r}; rename one of them"
                )
            if file in reserved:
                raise WillieError(f"sample {sample.name!r}: {file} is reserved for the gallery")
            owner[file] = sample.name


def write_gallery(
    out_dir: str | os.PathLike[str],
    samples: list[Sample],
    *,
    fps: float = 24.0,
    title: str = "Steamboat Willie: generated clips",
) -> dict[str, Path]:
    """Write every sample's MP4 and GIF, the contact sheet, index.html and samples.json.

    `out_dir` is replaced as a whole, atomically. Inputs are checked before anything is
    written. Returns file name → final path, for every file in the gallery.
    """
    _check_samples(samples, fps)
    fps = float(fps)
    out_dir = Path(out_dir)
    settings = [_plain_settings(s.name, s.settings) for s in samples]
    marked = [mark_prompt_frames(s.frames, s.prompt_frames) for s in samples]
    sheet = contact_sheet(marked)
    manifest = {
        "title": title,
        "fps": fps,
        "contact_sheet": "contact_sheet.png",
        "prompt_marking": "dashed black-and-white border on the first prompt_frames frames",
        "samples": [
            {
                "name": s.name,
                "files": s.files(),
                "frames": len(s.frames),
                "size": [s.height, s.width],  # [H, W]
                "prompt_frames": s.prompt_frames,
                "sound": s.audio is not None,
                "settings": st,
            }
            for s, st in zip(samples, settings, strict=True)
        ],
    }
    rate = Fraction(fps).limit_denominator(1001)  # 24.0 → 24, 30000/1001 → 30000/1001
    written: list[str] = []
    with atomic_path(out_dir) as temp:
        temp.mkdir()
        for sample, frames in zip(samples, marked, strict=True):
            files = sample.files()
            write_mp4(
                temp / files["mp4"], frames, rate, audio=sample.audio, audio_rate=sample.audio_rate
            )
            write_gif(temp / files["gif"], frames, fps)
            if sample.prompt is not None:
                write_gif(temp / files["prompt_gif"], sample.prompt, fps)
            if sample.tokens is not None:
                np.save(temp / files["tokens"], np.asarray(sample.tokens, dtype=np.int64))
            written += files.values()
        write_bytes(temp / "contact_sheet.png", _png(sheet))
        write_json(temp / "samples.json", manifest)
        index = _index_html(title, samples, settings, fps, sheet.shape[1])
        write_bytes(temp / "index.html", index.encode())
        written += ["contact_sheet.png", "samples.json", "index.html"]
    return {name: out_dir / name for name in written}
