from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler

from willie.data.dataset import AudioClips, ClipDataset, area_resize
from willie.data.shards import ClipRow, ClipShardWriter
from willie.errors import WillieError

SHAPE = (5, 16, 16)


@pytest.fixture
def clips_dir(tmp_path: Path) -> Path:
    for split, count in (("train", 10), ("val", 3)):
        with ClipShardWriter(tmp_path / split, SHAPE, clips_per_shard=4) as writer:
            for i in range(count):
                frames = np.full(SHAPE, i * 20, np.uint8)
                frames[:, :8] = 255  # top half white: area-downsampling mixes it
                writer.add(ClipRow(frames, scene=i, start_time_s=0.0, frame_indices=np.arange(5)))
    return tmp_path


def test_audio_beside_the_frames_and_silence_marked_not_faked(tmp_path: Path) -> None:
    for split in ("train", "val"):
        with ClipShardWriter(tmp_path / split, SHAPE, audio_rate=240, audio_samples=50) as writer:
            for i in range(4):
                sound = None if i % 2 else np.full(50, 1000 * (i + 1), np.int16)
                frames = np.zeros(SHAPE, np.uint8)
                writer.add(ClipRow(frames, i, 0.0, np.arange(5), sound))
    data = ClipDataset(tmp_path, "train", size=8, audio=True)
    batch = next(iter(DataLoader(data, batch_size=4)))
    video, audio, has_audio = batch
    assert video.shape == (4, 1, 5, 8, 8) and audio.shape == (4, 1, 50)
    assert has_audio.tolist() == [True, False, True, False]
    torch.testing.assert_close(audio[2], torch.full((1, 50), 3000 / 32767))
    assert ClipDataset(tmp_path, "val")[0].shape == (1, 5, 16, 16)  # frames alone by default
    sounds = AudioClips(tmp_path, "val")
    assert len(sounds) == 2 and sounds.rate == 240 and sounds.indices.tolist() == [0, 2]
    torch.testing.assert_close(sounds[1], torch.full((1, 50), 3000 / 32767))


def test_items_are_float_clips_in_unit_range(clips_dir: Path) -> None:
    data = ClipDataset(clips_dir, "train")
    assert len(data) == 10
    clip = data[3]
    assert clip.shape == (1, 5, 16, 16) and clip.dtype == torch.float32
    assert clip.max().item() == 1.0
    assert clip[0, 0, -1, 0].item() == pytest.approx(60 / 255 * 2 - 1)


def test_requested_size_is_area_downsampled(clips_dir: Path) -> None:
    clip = ClipDataset(clips_dir, "val", size=8)[1]
    assert clip.shape == (1, 5, 8, 8)
    full = ClipDataset(clips_dir, "val")[1]
    torch.testing.assert_close(clip.mean(), full.mean())  # area averaging keeps the mean


def test_area_resize_averages_blocks() -> None:
    video = torch.arange(16.0).reshape(1, 4, 4)
    expected = torch.tensor([[[2.5, 4.5], [10.5, 12.5]]])
    torch.testing.assert_close(area_resize(video, (2, 2)), expected)


def test_dataloader_workers_see_every_clip_once(clips_dir: Path) -> None:
    loader = DataLoader(ClipDataset(clips_dir, "train"), batch_size=3, num_workers=2)
    batches = list(loader)
    assert sum(len(b) for b in batches) == 10
    levels = torch.cat([b[:, 0, 0, -1, 0] for b in batches])
    torch.testing.assert_close(levels, torch.arange(10) * 20 / 255 * 2 - 1)


def test_distributed_sampler_splits_clips_by_rank(clips_dir: Path) -> None:
    data = ClipDataset(clips_dir, "train")
    seen = [
        set(DistributedSampler(data, num_replicas=2, rank=rank, shuffle=True, seed=1))
        for rank in (0, 1)
    ]
    assert seen[0].isdisjoint(seen[1]) and seen[0] | seen[1] == set(range(10))


def test_bad_split_or_size_is_a_clear_error(clips_dir: Path) -> None:
    with pytest.raises(WillieError, match="unknown split 'test'"):
        ClipDataset(clips_dir, "test")
    with pytest.raises(WillieError, match="exceeds the stored"):
        ClipDataset(clips_dir, "train", size=32)
    with pytest.raises(WillieError, match="run `willie preprocess`"):
        ClipDataset(clips_dir / "nowhere", "train")
