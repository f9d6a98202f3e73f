import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from willie.data.shards import ClipRow, ClipShards, ClipShardWriter
from willie.errors import WillieError

SHAPE = (5, 8, 16)


def clip(i: int) -> ClipRow:
    frames = np.random.default_rng(i).integers(0, 256, SHAPE, dtype=np.uint8)
    return ClipRow(frames, scene=i // 3, start_time_s=i / 24, frame_indices=np.arange(5) + 2 * i)


def test_shard_roundtrip_across_shards(tmp_path: Path) -> None:
    with ClipShardWriter(tmp_path, SHAPE, clips_per_shard=3) as writer:
        for i in range(8):
            writer.add(clip(i))
    assert [p.name for p in writer.paths] == [f"shard-0000{i}.arrow" for i in range(3)]
    shards = ClipShards(tmp_path)
    assert len(shards) == 8 and shards.clip_shape == SHAPE
    for i in range(8):
        np.testing.assert_array_equal(shards[i], clip(i).frames)
        assert shards.scene[i] == i // 3
        assert shards.start_time_s[i] == pytest.approx(i / 24)
        np.testing.assert_array_equal(shards.frame_indices[i], np.arange(5) + 2 * i)
    np.testing.assert_array_equal(shards[-1], clip(7).frames)
    with pytest.raises(IndexError):
        shards[8]


def test_reads_are_zero_copy_views_of_the_map(tmp_path: Path) -> None:
    with ClipShardWriter(tmp_path, SHAPE) as writer:
        writer.add(clip(0))
    view = ClipShards(tmp_path)[0]
    assert not view.flags.writeable and not view.flags.owndata


def test_pickled_reader_reopens_its_maps(tmp_path: Path) -> None:
    with ClipShardWriter(tmp_path, SHAPE) as writer:
        writer.add(clip(4))
    clone = pickle.loads(pickle.dumps(ClipShards(tmp_path)))
    np.testing.assert_array_equal(clone[0], clip(4).frames)


def test_writer_rejects_wrong_shape(tmp_path: Path) -> None:
    writer = ClipShardWriter(tmp_path, SHAPE)
    with pytest.raises(ValueError, match="want"):
        writer.add(ClipRow(np.zeros((4, 8, 16), np.uint8), 0, 0.0, np.arange(4)))


def test_killed_writer_leaves_no_readable_shard(tmp_path: Path) -> None:
    # The process dies (SIGKILL) with a fully written shard not yet renamed into place.
    script = f"""
import os, signal
import numpy as np
import willie.atomic
from willie.data.shards import ClipRow, ClipShardWriter
willie.atomic.os.replace = lambda *a: os.kill(os.getpid(), signal.SIGKILL)
with ClipShardWriter({str(tmp_path)!r}, {SHAPE}) as w:
    w.add(ClipRow(np.zeros({SHAPE}, np.uint8), 0, 0.0, np.arange(5)))
"""
    result = subprocess.run([sys.executable, "-c", script])
    assert result.returncode == -9
    assert list(tmp_path.iterdir()), "the temporary shard should still be on disk"
    with pytest.raises(WillieError, match="no clip shards"):
        ClipShards(tmp_path)


def test_truncated_shard_is_refused_by_name(tmp_path: Path) -> None:
    with ClipShardWriter(tmp_path, SHAPE) as writer:
        writer.add(clip(0))
    path = writer.paths[0]
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(WillieError, match=r"shard-00000\.arrow: not a complete Arrow clip shard"):
        ClipShards(tmp_path)
