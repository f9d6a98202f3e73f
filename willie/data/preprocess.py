"""The `preprocess` stage: the raw film → train/val Arrow clip shards.

For each file of the corpus, on its own terms: decode (PyAV, gray) → crop its black bars →
area-resize to `preprocess.size` → drop the duplicates that re-timing 24 fps film to 29.97 fps
video inserted → split at its scene cuts. Then, over the corpus (a file boundary is a cut, scene
ids are unique): group scenes that show the same shot → cut `clip_frames`-frame clips with
`stride`, never across a cut → split train/val by shot, so no shot is on both sides. Each clip
keeps the soundtrack of exactly its frames (mono at `preprocess.audio_rate`), or none where its
file is silent.

Bars are found on sample frames (keyframes across the film plus its first seconds), so the
film is decoded once, with crop and resize done inside FFmpeg's filter graph.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from willie.atomic import atomic_path, read_json, write_json
from willie.config import PreprocessConfig
from willie.data.shards import ClipRow, ClipShardWriter
from willie.data.video import (
    Box,
    VideoError,
    VideoInfo,
    decode_audio,
    iter_gray_frames,
    probe,
    sample_gray_frames,
    to_pcm16,
)
from willie.errors import WillieError

PROBE_FRAMES = 6  # frames from the start, besides keyframes, used to find the bars
BAR_MARGIN = 2  # pixels shaved inside the detected picture: its edge is anti-aliased into the bar
RETIME_MIN_RATIO = 1.05  # below this source/target fps ratio no frames are dropped
CUT_CONTRAST = 3.0  # a cut's frame difference is this many times its neighbours' mean
SAME_SHOT_CORRELATION = 0.75  # of two scenes' closest 16×16 thumbnails: the same shot


@dataclass(frozen=True)
class Clip:
    scene: int
    start: int  # index of the first frame in the kept (target fps) sequence


def detect_picture_box(path: Path, info: VideoInfo, black_level: int) -> Box:
    """The picture inside letterbox/pillarbox bars: the span of rows and columns whose mean
    brightness over sample frames exceeds `black_level`.

    Samples are the keyframes (spread over the whole film) and the first few frames, decoded
    at half resolution: bars are found to ±2 pixels, which `BAR_MARGIN` covers, at a small
    fraction of the cost of the main decode.
    """
    half = (info.height // 2, info.width // 2)
    samples = sample_gray_frames(path, first=PROBE_FRAMES, size=half)
    mean = np.stack(samples).mean(axis=0, dtype=np.float32)  # [H/2, W/2]

    def span(profile: np.ndarray, length: int) -> tuple[int, int]:
        bright = np.flatnonzero(profile > black_level)
        if len(bright) == 0:
            return 0, length  # a black film: nothing to crop
        lo, hi = 2 * int(bright[0]), 2 * (int(bright[-1]) + 1)
        if lo > 0:
            lo += BAR_MARGIN
        if hi < length:
            hi -= BAR_MARGIN
        return lo, min(hi, length)

    x0, x1 = span(mean.mean(axis=0), info.width)
    y0, y1 = span(mean.mean(axis=1), info.height)
    return Box(x=x0, y=y0, width=x1 - x0, height=y1 - y0)


def fit_aspect(box: Box, size: tuple[int, int]) -> Box:
    """Center-crop `box` to the aspect ratio of `size` (height, width)."""
    want = size[1] / size[0]
    if box.width / box.height > want:
        width = round(box.height * want)
        return Box(box.x + (box.width - width) // 2, box.y, width, box.height)
    height = round(box.width / want)
    return Box(box.x, box.y + (box.height - height) // 2, box.width, height)


def frame_differences(frames: np.ndarray, order: np.ndarray | None = None) -> np.ndarray:
    """d[j] = mean |frames[order[j]] − frames[order[j−1]]| / 255, d[0] = inf.

    frames: [N, H, W] uint8; order defaults to all frames in sequence.
    """
    order = np.arange(len(frames)) if order is None else order
    d = np.full(len(order), np.inf)
    for j in range(1, len(order)):
        a, b = frames[order[j - 1]], frames[order[j]]
        absdiff = np.maximum(a, b)
        absdiff -= np.minimum(a, b)  # |a − b| without widening uint8
        d[j] = absdiff.sum(dtype=np.uint32)
    d[1:] /= 255 * frames[0].size
    return d


def retime(d: np.ndarray, source_fps: float, target_fps: float) -> np.ndarray:
    """Indices of the frames to keep so that `source_fps` video plays at the film's rate.

    Re-timing 24 → 29.97 fps repeats one frame in every ~5. We drop exactly the number of
    frames the rate ratio implies, one per block of source frames, choosing in each block the
    frame closest to its predecessor — the repeat. Counting rather than thresholding matters:
    animation held on twos has legitimately identical consecutive frames, which must stay.
    """
    n = len(d)
    if source_fps < target_fps * RETIME_MIN_RATIO:
        return np.arange(n)
    drops = n - round(n * target_fps / source_fps)
    if drops <= 0:
        return np.arange(n)
    bounds = np.round(np.linspace(0, n, drops + 1)).astype(int)
    dropped = [lo + int(np.argmin(d[lo:hi])) for lo, hi in itertools.pairwise(bounds)]
    return np.setdiff1d(np.arange(n), dropped)


def detect_cuts(d: np.ndarray, threshold: float, window: int = 2) -> np.ndarray:
    """Indices i where a new shot starts at frame i.

    A cut is a frame difference above `threshold` that also stands out `CUT_CONTRAST`× from
    the mean of its `window` neighbours on each side: a sustained burst of fast motion does
    not, a hard cut between two shots does (the adaptive rule of PySceneDetect).
    """
    finite = np.where(np.isfinite(d), d, 0.0)
    cuts = []
    for i in np.flatnonzero(finite > threshold):
        lo, hi = max(1, i - window), min(len(d), i + window + 1)
        neighbours = np.delete(finite[lo:hi], i - lo)
        if len(neighbours) == 0 or finite[i] > CUT_CONTRAST * neighbours.mean():
            cuts.append(int(i))
    return np.asarray(cuts, dtype=int)


def clip_starts(lo: int, hi: int, clip_frames: int, stride: int) -> list[int]:
    """Starts of the clips of frames [lo, hi)."""
    return list(range(lo, hi - clip_frames + 1, stride))


def split_clips(
    scenes: list[tuple[int, int]], cfg: PreprocessConfig, shots: list[int] | None = None
) -> tuple[list[Clip], list[Clip], str]:
    """Train and val clips, split by shot (`shots`: a shot id per scene; default: each scene
    its own), shuffled with `cfg.seed` — or, when only one shot has clips, by time within its
    longest scene (val = its last `val_fraction`)."""
    T, stride = cfg.clip_frames, cfg.stride
    shots = shots if shots is not None else list(range(len(scenes)))
    per_scene = {
        s: [Clip(s, start) for start in clip_starts(lo, hi, T, stride)]
        for s, (lo, hi) in enumerate(scenes)
    }
    usable = [s for s, clips in per_scene.items() if clips]
    if not usable:
        raise WillieError(
            f"no scene is long enough for one clip of preprocess.clip_frames={T} frames "
            f"(longest scene: {max(hi - lo for lo, hi in scenes)} frames); use a longer video "
            "or a smaller clip_frames"
        )
    total = sum(len(per_scene[s]) for s in usable)
    per_shot: dict[int, list[int]] = {}
    for s in usable:
        per_shot.setdefault(shots[s], []).append(s)
    if len(per_shot) >= 2:
        order = np.random.default_rng(cfg.seed).permutation(sorted(per_shot))
        val_scenes: list[int] = []
        val_count = 0
        for shot in order[:-1]:  # the last shot always stays in train
            if val_count >= cfg.val_fraction * total:
                break
            val_scenes += per_shot[int(shot)]
            val_count += sum(len(per_scene[s]) for s in per_shot[int(shot)])
        train = [c for s in usable if s not in val_scenes for c in per_scene[s]]
        val = [c for s in sorted(val_scenes) for c in per_scene[s]]
        return train, val, "by_scene"

    s = max(usable, key=lambda s: scenes[s][1] - scenes[s][0])
    lo, hi = scenes[s]
    val_start = min(hi - round(cfg.val_fraction * (hi - lo)), hi - T)
    train = [Clip(s, x) for x in clip_starts(lo, val_start, T, stride)]
    train += [c for other in usable if other != s for c in per_scene[other]]
    val = [Clip(s, x) for x in clip_starts(val_start, hi, T, stride)]
    if not train:
        raise WillieError(
            f"the video has one scene of {hi - lo} frames: too short to split by time into "
            f"train and val clips of {T} frames (needs at least {2 * T}); use a longer video"
        )
    return train, val, "by_time"


def decode(video: Path, box: Box, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, float]:
    """All frames, cropped and resized: ([N, H, W] uint8, [N] source times, decode seconds)."""
    started = time.perf_counter()
    frames, times = [], []
    for frame in iter_gray_frames(video, crop=box, size=size):
        frames.append(frame.pixels)
        times.append(frame.time_s)
    seconds = time.perf_counter() - started
    if not frames:
        raise VideoError(f"{video}: no frames decoded")
    return np.stack(frames), np.asarray(times), seconds


def raw_videos(raw_dir: Path) -> tuple[list[Path], dict]:
    """The videos `download` put in `raw_dir`, in the manifest's order, and the manifest."""
    manifest_path = raw_dir / "manifest.json"
    if not manifest_path.is_file():
        raise WillieError(f"{manifest_path} not found: run `willie download` first")
    manifest = read_json(manifest_path)
    if "files" not in manifest:
        raise WillieError(f"{manifest_path} predates corpora (no `files`): run `willie download`")
    return [raw_dir / f["file"] for f in manifest["files"]], manifest


@dataclass
class Footage:
    """One file of the corpus, decoded on its own terms: its bars, its frame rate, its cuts."""

    name: str
    frames: np.ndarray  # [N, H, W] uint8, re-timed
    times: np.ndarray  # [N] source timestamps (s)
    scenes: list[tuple[int, int]]  # [lo, hi) in `frames`
    about: dict  # for the manifest
    audio: (
        np.ndarray | None
    )  # [samples] mono float at audio_rate, on the source clock; None: silent

    def clip_audio(
        self, start_s: float, samples: int, rate: int, per_frame: int
    ) -> np.ndarray | None:
        """The `samples` of sound from source time `start_s` (a clip's first frame), or None
        when the file is silent or its sound ends more than a frame's worth (`per_frame`
        samples) before the clip's."""
        if self.audio is None:
            return None
        lo = round(start_s * rate)
        piece = self.audio[lo : lo + samples]
        if samples - len(piece) > per_frame:  # the stream stops well before the picture
            return None
        return to_pcm16(np.pad(piece, (0, samples - len(piece))))


def prepare(video: Path, cfg: PreprocessConfig) -> tuple[Footage, float]:
    """Decode, crop, re-time and cut one file; (its footage, decode seconds)."""
    info = probe(video)
    size = cfg.frame_size
    picture = detect_picture_box(video, info, cfg.black_level)
    box = fit_aspect(picture, size)
    frames, times, decode_s = decode(video, box, size)
    keep = retime(frame_differences(frames), info.fps, cfg.fps)
    decoded = len(frames)
    cuts = detect_cuts(frame_differences(frames, keep), cfg.cut_threshold)
    frames, times = frames[keep], times[keep]
    about = {
        "file": video.name,
        "source_fps": info.fps,
        "frames_decoded": decoded,
        "frames_kept": len(frames),
        "crop_box": {"picture": vars(picture), "used": vars(box)},
    }
    scenes = list(itertools.pairwise([0, *cuts.tolist(), len(frames)]))
    audio = decode_audio(video, cfg.audio_rate)
    about["has_audio"] = audio is not None
    return Footage(video.name, frames, times, scenes, about, audio), decode_s


def same_shots(frames: np.ndarray, scenes: list[tuple[int, int]], every: int = 4) -> list[int]:
    """A shot id per scene: scenes that show the same drawing (the same shot in two files of
    the corpus, or a set-up the film cuts back to) share one, so a split by shot never puts it
    on both sides. Two scenes are the same shot when some pair of their frames' 16×16
    thumbnails correlates above `SAME_SHOT_CORRELATION`."""
    thumbs = []
    for lo, hi in scenes:
        x = frames[lo:hi:every].astype(np.float32)  # [n, H, W]
        n, H, W = x.shape
        x = x[:, : H // 16 * 16, : W // 16 * 16].reshape(n, 16, H // 16, 16, W // 16).mean((2, 4))
        x = x.reshape(n, -1) - x.reshape(n, -1).mean(1, keepdims=True)
        thumbs.append(x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-6))
    parent = list(range(len(scenes)))

    def root(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    for i, j in itertools.combinations(range(len(scenes)), 2):
        if (thumbs[i] @ thumbs[j].T).max(initial=-1.0) > SAME_SHOT_CORRELATION:
            parent[root(j)] = root(i)
    roots = [root(i) for i in range(len(scenes))]
    first = {r: n for n, r in enumerate(dict.fromkeys(roots))}
    return [first[r] for r in roots]


def run_preprocess(
    cfg: PreprocessConfig,
    raw_dir: str | Path = "data/raw",
    out_dir: str | Path = "data/clips",
) -> dict:
    """Write `out_dir/{train,val}/shard-*.arrow` and `out_dir/manifest.json`; return metrics.

    Every file of the corpus is decoded on its own terms; scene ids are unique across the
    corpus (a file boundary is a cut) and the split is by shot over the whole corpus.
    """
    started = time.perf_counter()
    videos, raw_manifest = raw_videos(Path(raw_dir))
    footage, decode_s = [], 0.0
    for video in videos:
        part, seconds = prepare(video, cfg)
        footage.append(part)
        decode_s += seconds
    frames = np.concatenate([f.frames for f in footage])  # the corpus, file after file
    times = np.concatenate([f.times for f in footage])
    scenes, scene_file, offset = [], [], 0
    for n, part in enumerate(footage):
        scenes += [(lo + offset, hi + offset) for lo, hi in part.scenes]
        scene_file += [n] * len(part.scenes)
        offset += len(part.frames)
    if len(frames) < cfg.clip_frames:
        raise WillieError(
            f"{', '.join(v.name for v in videos)}: {len(frames)} frames after re-timing, "
            f"shorter than one clip of preprocess.clip_frames={cfg.clip_frames}"
        )
    shots = same_shots(frames, scenes)
    train, val, split_rule = split_clips(scenes, cfg, shots)

    T = cfg.clip_frames
    clip_shape = (T, *cfg.frame_size)
    samples = T * cfg.audio_per_frame
    shards: dict[str, list[str]] = {}
    with_audio: dict[str, int] = {}
    with atomic_path(out_dir) as temp:
        for split, clips in (("train", train), ("val", val)):
            with ClipShardWriter(
                temp / split,
                clip_shape,
                cfg.shard_clips,
                audio_rate=cfg.audio_rate,
                audio_samples=samples,
            ) as writer:
                with_audio[split] = 0
                for clip in clips:
                    span = slice(clip.start, clip.start + T)
                    start_s = float(times[clip.start])  # in its own file
                    audio = footage[scene_file[clip.scene]].clip_audio(
                        start_s, samples, cfg.audio_rate, cfg.audio_per_frame
                    )
                    with_audio[split] += audio is not None
                    writer.add(
                        ClipRow(
                            frames[span],
                            clip.scene,
                            start_s,
                            np.arange(clip.start, clip.start + T),  # in the corpus
                            audio,
                        )
                    )
            shards[split] = [p.name for p in writer.paths]
        in_split = {
            c.scene: split for split, clips in (("train", train), ("val", val)) for c in clips
        }
        raw_files = raw_manifest["files"]
        manifest = {
            "source": {
                "source": raw_manifest.get("source"),
                "seed": raw_manifest.get("seed"),  # the synthetic film's; None for files
                "files": [f["file"] for f in raw_files],
                "sha256": [f.get("sha256") for f in raw_files],
            },
            "fps": cfg.fps,
            "clip_shape": list(clip_shape),
            "dtype": "uint8",
            "audio_rate": cfg.audio_rate,
            "audio_samples": samples,
            "stride": cfg.stride,
            "files": [
                part.about
                | {
                    "audio": raw.get("audio"),
                    "scenes": [s for s, n in enumerate(scene_file) if n == i],
                }
                for i, (part, raw) in enumerate(zip(footage, raw_files, strict=True))
            ],
            "frames_decoded": sum(f.about["frames_decoded"] for f in footage),
            "frames_kept": len(frames),
            "scenes": [
                {
                    "start": lo,
                    "end": hi,
                    "file": footage[scene_file[s]].name,
                    "shot": shots[s],
                    "split": in_split.get(s),  # None: too short for a clip
                }
                for s, (lo, hi) in enumerate(scenes)
            ],
            "split_rule": split_rule,
            "split_seed": cfg.seed,
            "val_fraction": cfg.val_fraction,
            "clips": {"train": len(train), "val": len(val)},
            "clips_with_audio": with_audio,
            "shards": shards,
        }
        write_json(temp / "manifest.json", manifest)

    seconds = time.perf_counter() - started
    decoded = manifest["frames_decoded"]
    return {
        "files": len(videos),
        "frames_decoded": decoded,
        "frames_kept": len(frames),
        "duplicates_dropped": decoded - len(frames),
        "scenes": len(scenes),
        "shots": len(set(shots)),
        "clips_train": len(train),
        "clips_val": len(val),
        "clips_with_audio_train": with_audio["train"],
        "clips_with_audio_val": with_audio["val"],
        "decode_fps": round(decoded / decode_s, 1),
        "stage_fps": round(decoded / seconds, 1),
        "seconds": round(seconds, 3),
    }
