"""The gallery as a person sees it: `index.html` opened from disk in headless Chromium.

Every picture loads, every video plays for as long as it should, the console stays clean and
every link leads to a file; a sample with sound plays it. CI installs Debian's `chromium` and
Playwright (`.ci/run`); where either is missing these tests skip and say so.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.test_gallery import make_samples
from willie.generation.gallery import write_gallery

CHROMIUM = Path(shutil.which("chromium") or "/usr/bin/chromium")
sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed")
if not CHROMIUM.is_file():
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)

# Resolves once per video: when it has its first frame (readyState 2), fails, or times out.
VIDEO_STATES = """async () => Promise.all([...document.querySelectorAll('video')].map(v =>
  new Promise(done => {
    const report = () => done({src: v.getAttribute('src'), ready: v.readyState,
                               duration: v.duration, error: v.error ? v.error.code : null});
    if (v.readyState >= 2 || v.error) return report();
    v.addEventListener('loadeddata', report, {once: true});
    v.addEventListener('error', report, {once: true});
    setTimeout(report, 10000);
    v.preload = 'auto';
    v.load();
  })))"""


# Plays every video for `ms` and reports how many bytes of sound Chromium decoded for each.
HEARD = """async ms => Promise.all([...document.querySelectorAll('video')].map(async v => {
  await v.play();
  await new Promise(wait => setTimeout(wait, ms));
  v.pause();
  return [v.getAttribute('src'), v.webkitAudioDecodedByteCount];
}))"""


def heard(index: Path, ms: int = 600) -> dict[str, int]:
    """Bytes of sound decoded per video while each plays `ms` (0: it has no sound track)."""
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--autoplay-policy=no-user-gesture-required"]
        )
        page = browser.new_page()
        page.goto(index.as_uri(), wait_until="load")
        result = dict(page.evaluate(HEARD, ms))
        browser.close()
    return result


def browse(index: Path) -> tuple[list[str], dict[str, float]]:
    """(what is broken, each video's duration in seconds) on opening `index`."""
    problems: list[str] = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM))
        page = browser.new_page()
        page.on(
            "console",
            lambda m: problems.append(f"console error: {m.text}") if m.type == "error" else None,
        )
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.on("requestfailed", lambda r: problems.append(f"failed to load {r.url}"))
        page.goto(index.as_uri(), wait_until="load")
        images = page.eval_on_selector_all(
            "img", "els => els.map(e => [e.getAttribute('src'), e.naturalWidth])"
        )
        problems += [f"image {src} did not load" for src, width in images if width == 0]
        videos = page.evaluate(VIDEO_STATES)
        problems += [
            f"video {v['src']} cannot play (readyState {v['ready']}, error {v['error']})"
            for v in videos
            if v["ready"] < 2
        ]
        links = page.eval_on_selector_all("a", "els => els.map(e => e.getAttribute('href'))")
        problems += [f"link {h} leads nowhere" for h in links if not (index.parent / h).is_file()]
        browser.close()
    return problems, {v["src"]: v["duration"] for v in videos}


@pytest.fixture
def gallery(tmp_path: Path) -> Path:
    write_gallery(tmp_path, make_samples(), fps=12.0)
    return tmp_path


def test_everything_in_the_gallery_loads_and_plays(gallery: Path) -> None:
    problems, durations = browse(gallery / "index.html")
    assert problems == []
    index = json.loads((gallery / "samples.json").read_text())
    assert len(durations) == len(index["samples"]) == 3
    for sample in index["samples"]:  # as long as written: frames / fps
        expected = sample["frames"] / 12.0
        assert durations[sample["files"]["mp4"]] == pytest.approx(expected, abs=1 / 12 + 1e-3)


def test_a_missing_or_broken_video_is_seen(gallery: Path) -> None:
    (gallery / "sample_001.mp4").unlink()
    broken = gallery / "wide-clip.mp4"
    broken.write_bytes(broken.read_bytes()[:200])
    (gallery / "sample_000.gif").unlink()
    problems, _ = browse(gallery / "index.html")
    text = "\n".join(problems)
    assert "video sample_001.mp4 cannot play" in text
    assert "video wide-clip.mp4 cannot play" in text
    assert "image sample_000.gif did not load" in text
    assert "link sample_001.mp4 leads nowhere" in text


def test_a_sample_with_sound_plays_it(tmp_path: Path) -> None:
    samples = make_samples()
    t = np.arange(24 * 500) / 12_000  # sample_000: 24 frames at 24 fps, a whistle-like tone
    tone = (0.3 * np.sin(2 * np.pi * 700 * t)).astype(np.float32)
    samples[0] = dataclasses.replace(samples[0], audio=tone, audio_rate=12_000)
    write_gallery(tmp_path, samples, fps=24.0)
    problems, _ = browse(tmp_path / "index.html")
    assert problems == []
    decoded = heard(tmp_path / "index.html")
    assert decoded["sample_000.mp4"] > 1000  # sound decoded while it played
    assert decoded["sample_001.mp4"] == 0  # a silent sample has no sound track
