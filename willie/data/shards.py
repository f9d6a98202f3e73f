"""Arrow IPC clip shards: one row per clip, a fixed-shape uint8 tensor, its soundtrack (int16
PCM, null where the source file is silent) and where it came from.

Shards are Arrow IPC *files* (random access through the footer), uncompressed, so a reader
memory-maps them and a clip is a zero-copy view into the page cache. Each shard is written
under a temporary name and renamed when complete: a crash never leaves a `*.arrow` file that
a reader accepts, and a truncated one (no footer) is refused with its name.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from willie.atomic import atomic_path
from willie.errors import WillieError

SHARD_GLOB = "shard-*.arrow"


def clip_schema(clip_shape: tuple[int, int, int], audio_rate: int, audio_samples: int) -> pa.Schema:
    """The shard schema; without an `audio` column when `audio_samples` is 0 (no soundtrack)."""
    frames = clip_shape[0]
    fields = [
        pa.field("frames", pa.fixed_shape_tensor(pa.uint8(), list(clip_shape))),  # [T, H, W]
        pa.field("scene", pa.int32()),
        pa.field("start_time_s", pa.float64()),  # source timestamp of the first frame
        pa.field("frame_indices", pa.list_(pa.int32(), frames)),  # in the 24 fps sequence
    ]
    if audio_samples:
        # [S] mono PCM of exactly the clip's frames (S = T × rate / fps); null: no sound
        audio = pa.fixed_shape_tensor(pa.int16(), [audio_samples])
        fields.append(pa.field("audio", audio, nullable=True))
    return pa.schema(fields, metadata={"audio_rate": str(audio_rate)})


@dataclass(frozen=True)
class ClipRow:
    frames: np.ndarray  # [T, H, W] uint8
    scene: int
    start_time_s: float
    frame_indices: np.ndarray  # [T] int
    audio: np.ndarray | None = None  # [S] int16; None: the source has no soundtrack


class ClipShardWriter:
    """Buffers clips and writes them as `shard-00000.arrow`, `shard-00001.arrow`, … atomically.

    Use as a context manager; `paths` lists the shards written. Each clip's `audio` is
    `audio_samples` int16 samples at `audio_rate` Hz, or None.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        clip_shape: tuple[int, int, int],
        clips_per_shard: int = 256,
        *,
        audio_rate: int = 0,
        audio_samples: int = 0,
    ) -> None:
        self.directory = Path(directory)
        self.clip_shape = tuple(clip_shape)
        self.clips_per_shard = clips_per_shard
        self.audio_samples = audio_samples
        self.schema = clip_schema(self.clip_shape, audio_rate, audio_samples)
        self.paths: list[Path] = []
        self.rows = 0
        self._buffer: list[ClipRow] = []
        self.directory.mkdir(parents=True, exist_ok=True)

    def add(self, row: ClipRow) -> None:
        if row.frames.shape != self.clip_shape or row.frames.dtype != np.uint8:
            raise ValueError(
                f"clip {row.frames.shape} {row.frames.dtype}, want {self.clip_shape} uint8"
            )
        if row.audio is not None and (
            not self.audio_samples
            or row.audio.shape != (self.audio_samples,)
            or row.audio.dtype != np.int16
        ):
            raise ValueError(
                f"clip audio {row.audio.shape} {row.audio.dtype}, "
                f"want ({self.audio_samples},) int16"
            )
        self._buffer.append(row)
        if len(self._buffer) == self.clips_per_shard:
            self.flush()

    def flush(self) -> None:
        if not self._buffer:
            return
        rows, self._buffer = self._buffer, []
        frames = np.stack([r.frames for r in rows])  # [N, T, H, W]
        columns = [
            pa.FixedShapeTensorArray.from_numpy_ndarray(frames),
            pa.array([r.scene for r in rows], pa.int32()),
            pa.array([r.start_time_s for r in rows], pa.float64()),
            pa.FixedSizeListArray.from_arrays(
                pa.array(np.concatenate([r.frame_indices for r in rows]), pa.int32()),
                self.clip_shape[0],
            ),
        ]
        if self.audio_samples:
            silent = np.array([r.audio is None for r in rows])
            audio = np.stack(
                [
                    np.zeros(self.audio_samples, np.int16) if r.audio is None else r.audio
                    for r in rows
                ]
            )  # [N, S]; a silent row's slot is masked null, never read as sound
            pcm = pa.array(audio.reshape(-1), pa.int16())
            storage = pa.FixedSizeListArray.from_arrays(
                pcm, self.audio_samples, mask=pa.array(silent)
            )
            columns.append(pa.ExtensionArray.from_storage(self.schema.field("audio").type, storage))
        batch = pa.record_batch(columns, schema=self.schema)
        path = self.directory / f"shard-{len(self.paths):05d}.arrow"
        with (
            atomic_path(path) as temp,
            pa.OSFile(str(temp), "wb") as sink,
            pa.ipc.new_file(sink, self.schema) as writer,
        ):
            writer.write_batch(batch)
        self.paths.append(path)
        self.rows += len(rows)

    def __enter__(self) -> ClipShardWriter:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is None:
            self.flush()


class ClipShards:
    """Random access to the clips of one split directory, memory-mapped.

    `shards[i]` is a read-only [T, H, W] uint8 view into the page cache (copy it to keep it);
    `shards.audio(i)` its [S] int16 soundtrack at `audio_rate` Hz, or None. Opening is cheap
    (footers only); pickling drops the maps so DataLoader workers reopen them.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.paths = sorted(self.directory.glob(SHARD_GLOB))
        if not self.paths:
            raise WillieError(
                f"{self.directory}: no clip shards ({SHARD_GLOB}); run `willie preprocess` "
                "(or `dvc repro preprocess`) first"
            )
        self._open()

    def _open(self) -> None:
        frames, scenes, starts, indices, audio, sound = [], [], [], [], [], []
        self.audio_rate = 0
        for path in self.paths:
            try:
                reader = pa.ipc.open_file(pa.memory_map(str(path), "r"))
                metadata = reader.schema.metadata or {}
                self.audio_rate = int(metadata.get(b"audio_rate", 0))
                batches = [reader.get_batch(i) for i in range(reader.num_record_batches)]
            except (pa.ArrowInvalid, OSError) as e:
                raise WillieError(f"{path}: not a complete Arrow clip shard ({e})") from None
            for batch in batches:
                column = batch.column("frames")
                shape = tuple(column.type.shape)
                flat = column.storage.flatten().to_numpy(zero_copy_only=True)
                frames.append(flat.reshape(len(batch), *shape))
                scenes.append(batch.column("scene").to_numpy())
                starts.append(batch.column("start_time_s").to_numpy())
                indices.append(
                    batch.column("frame_indices").flatten().to_numpy().reshape(-1, shape[0])
                )
                if "audio" in batch.schema.names:  # shards before the soundtrack have none
                    storage = batch.column("audio").storage
                    values = storage.values.to_numpy(zero_copy_only=True)
                    audio.append(values.reshape(len(batch), -1))
                    sound.append(storage.is_valid().to_numpy(zero_copy_only=False))
                else:
                    audio.append(np.zeros((len(batch), 0), np.int16))
                    sound.append(np.zeros(len(batch), bool))
        self._frames = frames
        self._offsets = np.cumsum([0] + [len(f) for f in frames])
        self.scene = np.concatenate(scenes)
        self.start_time_s = np.concatenate(starts)
        self.frame_indices = np.concatenate(indices)
        self._audio = audio
        self.audio_samples = audio[0].shape[1] if audio else 0
        self.has_audio = np.concatenate(sound)  # [N] bool
        shapes = {f.shape[1:] for f in frames}
        if len(shapes) != 1:
            raise WillieError(f"{self.directory}: shards disagree on the clip shape: {shapes}")
        self.clip_shape: tuple[int, int, int] = shapes.pop()

    def __len__(self) -> int:
        return int(self._offsets[-1])

    @property
    def audio_per_frame(self) -> int:
        """Soundtrack samples per frame (0: shards without sound)."""
        return self.audio_samples // self.clip_shape[0]

    def __getitem__(self, index: int) -> np.ndarray:
        shard, row = self._locate(index)
        return self._frames[shard][row]

    def _locate(self, index: int) -> tuple[int, int]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"clip {index} out of range for {len(self)} clips")
        index %= len(self)
        shard = int(np.searchsorted(self._offsets, index, side="right")) - 1
        return shard, index - int(self._offsets[shard])

    def audio(self, index: int) -> np.ndarray | None:
        """Clip `index`'s soundtrack: [S] int16 (read-only view), or None where it has none."""
        shard, row = self._locate(index)
        return self._audio[shard][row] if self.has_audio[index] else None

    def __getstate__(self) -> dict:
        return {"directory": self.directory, "paths": self.paths}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._open()
