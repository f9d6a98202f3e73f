"""Video I/O through PyAV: probing, fast grayscale decoding, the soundtrack, H.264 + AAC encoding.

Decoding runs crop → area resize → grayscale inside an FFmpeg filter graph, in C, so the
per-frame cost stays close to the bare decode (see `bench/bench_preprocess.py`).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from willie.atomic import atomic_path
from willie.errors import WillieError


class VideoError(WillieError):
    """A file that is missing, not a video, truncated or otherwise undecodable."""


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    fps: float
    frames: int  # from the container; 0 where it does not say
    duration_s: float
    codec: str
    audio: AudioInfo | None = None  # the first audio stream; None: the file is silent


@dataclass(frozen=True)
class AudioInfo:
    codec: str
    sample_rate: int
    channels: int


@dataclass(frozen=True)
class Box:
    """A crop rectangle in pixels: columns x..x+width, rows y..y+height."""

    x: int
    y: int
    width: int
    height: int


@dataclass(frozen=True)
class Frame:
    time_s: float  # presentation time in the source
    pixels: np.ndarray  # [H, W] uint8, full-range gray


def _open(path: str | os.PathLike[str]) -> av.container.InputContainer:
    path = Path(path)
    if not path.is_file():
        raise VideoError(f"{path}: no such file")
    try:
        container = av.open(str(path))
    except av.error.FFmpegError as e:
        raise VideoError(f"{path}: not a readable video ({e})") from None
    if not container.streams.video:
        container.close()
        raise VideoError(f"{path}: has no video stream")
    return container


def probe(path: str | os.PathLike[str]) -> VideoInfo:
    """Read the stream's properties and decode its first frame (so a non-video fails here)."""
    with _open(path) as container:
        stream = container.streams.video[0]
        try:
            next(container.decode(stream))
        except (StopIteration, av.error.FFmpegError) as e:
            raise VideoError(f"{path}: no decodable video frame ({e or 'empty stream'})") from None
        fps = float(stream.average_rate or stream.guessed_rate or 0)
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        else:
            duration = (container.duration or 0) / av.time_base
        audio = None
        if container.streams.audio:
            ctx = container.streams.audio[0].codec_context
            audio = AudioInfo(ctx.name, int(ctx.sample_rate or 0), int(ctx.channels or 0))
        return VideoInfo(
            width=stream.codec_context.width,
            height=stream.codec_context.height,
            fps=fps,
            frames=stream.frames or round(duration * fps),
            duration_s=duration,
            codec=stream.codec_context.name,
            audio=audio,
        )


# Limited ("MPEG", 16..235) luma → full-range gray, applied to the small output frames.
_LIMITED_TO_FULL = np.clip(np.round((np.arange(256) - 16) * 255 / 219), 0, 255).astype(np.uint8)


def _luma_is_limited(stream: av.video.stream.VideoStream) -> bool:
    ctx = stream.codec_context
    # Unspecified range means limited for YUV video; yuvj* formats are full range.
    return not ctx.format.name.startswith("yuvj") and int(ctx.color_range or 1) != 2


def _filter_graph(
    stream: av.video.stream.VideoStream, crop: Box | None, size: tuple[int, int] | None
) -> av.filter.Graph:
    """crop → area scale on the luma plane alone (a third of the pixels of converting first)."""
    graph = av.filter.Graph()
    chain = [graph.add_buffer(template=stream)]
    is_yuv = stream.codec_context.format.name.startswith(("yuv", "nv"))
    chain.append(
        graph.add("extractplanes", "y") if is_yuv else graph.add("format", "pix_fmts=gray")
    )
    if crop is not None:
        chain.append(graph.add("crop", f"w={crop.width}:h={crop.height}:x={crop.x}:y={crop.y}"))
    if size is not None:
        chain.append(graph.add("scale", f"w={size[1]}:h={size[0]}:flags=area"))
    chain.append(graph.add("buffersink"))
    for a, b in itertools.pairwise(chain):
        a.link_to(b)
    graph.configure()
    return graph


def _filter(graph: av.filter.Graph, frame: av.VideoFrame, expand: np.ndarray | None) -> np.ndarray:
    """One decoded frame through the graph → [H, W] uint8 full-range gray."""
    graph.push(frame)
    pixels = graph.pull().to_ndarray()
    return expand[pixels] if expand is not None else pixels


def iter_gray_frames(
    path: str | os.PathLike[str],
    *,
    crop: Box | None = None,
    size: tuple[int, int] | None = None,
    start_s: float = 0.0,
    max_frames: int | None = None,
) -> Iterator[Frame]:
    """Decode frames as full-range gray, optionally cropped then area-resized to (H, W).

    `start_s` seeks to the keyframe before that time and skips to it (random access into a
    video, as a loader without preprocessed shards must do). Raises VideoError when the
    stream is corrupt or ends far short of its declared length.
    """
    with _open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        graph = _filter_graph(stream, crop, size)
        expand = _LIMITED_TO_FULL if _luma_is_limited(stream) else None
        if start_s > 0:
            container.seek(int(start_s / stream.time_base), stream=stream, backward=True)
        decoded = 0
        try:
            for frame in container.decode(stream):
                if frame.time is not None and frame.time < start_s - 1e-3:
                    continue
                yield Frame(time_s=float(frame.time or 0.0), pixels=_filter(graph, frame, expand))
                decoded += 1
                if decoded == max_frames:
                    return
        except av.error.FFmpegError as e:
            raise VideoError(f"{path}: corrupt video after {decoded} frames ({e})") from None
        declared = stream.frames
        if max_frames is None and not start_s and declared and decoded < 0.9 * declared:
            raise VideoError(
                f"{path}: truncated video, decoded {decoded} of {declared} declared frames"
            )


def sample_gray_frames(
    path: str | os.PathLike[str], *, first: int, size: tuple[int, int] | None = None
) -> list[np.ndarray]:
    """The first `first` frames, then every keyframe: a cheap sample spread over a whole film.

    Only keyframe packets are sent to the decoder after the first frames, so the cost is a
    demux pass plus a few dozen decodes, whatever the film's length.
    """
    with _open(path) as container:
        stream = container.streams.video[0]
        graph = _filter_graph(stream, None, size)
        expand = _LIMITED_TO_FULL if _luma_is_limited(stream) else None
        samples: list[np.ndarray] = []
        try:
            for packet in container.demux(stream):
                if len(samples) >= first and not packet.is_keyframe:
                    continue
                for frame in packet.decode():
                    samples.append(_filter(graph, frame, expand))
        except av.error.FFmpegError as e:
            raise VideoError(f"{path}: corrupt video ({e})") from None
    if not samples:
        raise VideoError(f"{path}: no decodable video frame")
    return samples


def decode_audio(path: str | os.PathLike[str], rate: int) -> np.ndarray | None:
    """The first audio stream as mono float32 in [-1, 1] at `rate` Hz, on the container's
    clock: sample i sounds at time i / rate (leading silence where the stream starts late),
    so it lines up with the video frames' presentation times. None: the file has no audio.
    """
    with _open(path) as container:
        if not container.streams.audio:
            return None
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
        chunks: list[np.ndarray] = []
        start: float | None = None
        try:
            for frame in container.decode(stream):
                if start is None:
                    start = float(frame.time or 0.0)
                chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
            chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
        except av.error.FFmpegError as e:
            raise VideoError(f"{path}: corrupt audio stream ({e})") from None
    samples = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    lead = round((start or 0.0) * rate)
    if lead > 0:
        samples = np.concatenate([np.zeros(lead, np.float32), samples])
    elif lead < 0:
        samples = samples[-lead:]
    return np.clip(samples, -1, 1).astype(np.float32, copy=False)


def to_pcm16(audio: np.ndarray) -> np.ndarray:
    """float [-1, 1] → int16 PCM (clipped, rounded)."""
    return np.round(np.clip(audio, -1, 1) * 32767).astype(np.int16)


AAC_BITRATE = 64_000  # mono: ample for a 1928 optical soundtrack


def write_mp4(
    path: str | os.PathLike[str],
    frames: Iterable[np.ndarray],
    fps: int | Fraction = 24,
    *,
    crf: int = 18,
    audio: np.ndarray | None = None,
    audio_rate: int = 0,
) -> int:
    """Encode [H, W] uint8 gray frames as H.264 (yuv420p, plays everywhere), and `audio`
    (mono float in [-1, 1] at `audio_rate` Hz, sample 0 at the first frame) as an AAC track;
    atomic. The sound is interleaved with the frames it belongs to.

    Returns the number of frames written.
    """
    if audio is not None and audio_rate <= 0:
        raise ValueError("write_mp4: audio needs its audio_rate")
    rate = Fraction(fps)
    count, sent = 0, 0
    with atomic_path(path) as temp, av.open(str(temp), mode="w", format="mp4") as container:
        stream = None
        sound = None
        if audio is not None:
            sound = container.add_stream("aac", rate=audio_rate, layout="mono")
            sound.bit_rate = AAC_BITRATE

        def send_audio(until: int) -> None:
            nonlocal sent
            if sound is None or until <= sent:
                return
            chunk = np.ascontiguousarray(audio[sent:until], np.float32).reshape(1, -1)
            piece = av.AudioFrame.from_ndarray(chunk, format="flt", layout="mono")
            piece.sample_rate, piece.pts = audio_rate, sent
            piece.time_base = Fraction(1, audio_rate)
            container.mux(sound.encode(piece))
            sent = until

        for pixels in frames:
            if stream is None:
                height, width = pixels.shape
                stream = container.add_stream("libx264", rate=rate)
                stream.width, stream.height = width, height
                stream.pix_fmt = "yuv420p"
                # Deterministic output: frame threads in x264 make bits depend on timing.
                stream.options = {"crf": str(crf), "preset": "medium", "threads": "1"}
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format="gray")
            container.mux(stream.encode(frame))
            count += 1
            if audio is not None:
                send_audio(min(len(audio), round(count * audio_rate / rate)))
        if stream is None:
            raise VideoError(f"{path}: no frames to write")
        container.mux(stream.encode(None))
        if sound is not None:
            send_audio(len(audio))
            container.mux(sound.encode(None))
    return count


def write_wav(path: str | os.PathLike[str], audio: np.ndarray, rate: int) -> None:
    """Mono float audio in [-1, 1] as a 16-bit PCM WAV; atomic."""
    import wave

    pcm = to_pcm16(audio).astype("<i2")  # WAV is little-endian
    with atomic_path(path) as temp, wave.open(str(temp), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm.tobytes())


def write_gif(path: str | os.PathLike[str], frames: np.ndarray, fps: float = 24) -> None:
    """[T, H, W] uint8 gray frames as a looping GIF; atomic."""
    from PIL import Image

    images = [Image.fromarray(np.ascontiguousarray(frame), mode="L") for frame in frames]
    with atomic_path(path) as temp:
        images[0].save(
            temp,
            format="GIF",
            save_all=True,
            append_images=images[1:],
            duration=round(1000 / fps),
            loop=0,
        )
