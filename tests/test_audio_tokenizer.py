"""The audio tokenizer: shapes, causality, FSQ round trip, measures and its training stage."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from willie.audio.measures import mulaw_codec, si_snr, stft_distance_db
from willie.audio.model import AudioTokenizer, AudioTokenizerArch, load_audio_tokenizer
from willie.audio.train import train_audio_tokenizer
from willie.config import AudioConfig, validate_params
from willie.data.shards import ClipRow, ClipShardWriter
from willie.errors import WillieError

SMALL = AudioTokenizerArch(channels=4, strides=(2, 5), dilations=(1,), codebooks=2)


def test_tokens_per_hop_and_back() -> None:
    model = AudioTokenizer(SMALL)
    audio = torch.randn(3, 1, 10 * SMALL.hop).clamp(-1, 1)
    recon, indices = model(audio)
    assert recon.shape == audio.shape
    assert indices.shape == (3, 10, 2) and indices.max() < model.codebook_size
    torch.testing.assert_close(model.decode(indices), recon)  # decode(encode) = forward
    with pytest.raises(ValueError, match="whole number of hops"):
        model.encode(audio[..., :-1])


def test_encoder_and_decoder_are_causal() -> None:
    torch.manual_seed(0)
    model = AudioTokenizer(SMALL).eval()
    hop, steps = SMALL.hop, 12
    audio = torch.randn(1, 1, steps * hop)
    changed = audio.clone()
    changed[..., 7 * hop :] = torch.randn(1, 1, (steps - 7) * hop)  # from step 7 on
    before, after = model.encoder(audio), model.encoder(changed)
    torch.testing.assert_close(before[..., :7], after[..., :7])  # steps 0..6 never see it
    assert not torch.allclose(before[..., 7], after[..., 7])
    indices = model.encode(audio)
    later = indices.clone()
    later[:, 5:] = (later[:, 5:] + 1) % model.codebook_size  # tokens from step 5 on
    sound, other = model.decode(indices), model.decode(later)
    torch.testing.assert_close(sound[..., : 5 * hop], other[..., : 5 * hop])
    assert not torch.allclose(sound[..., 5 * hop :], other[..., 5 * hop :])


def test_measures_mean_what_they_say() -> None:
    t = torch.arange(6000) / 12000
    tone = (0.5 * torch.sin(2 * torch.pi * 440 * t)).reshape(1, 1, -1)
    noise = 0.05 * torch.randn(1, 1, 6000, generator=torch.Generator().manual_seed(0))
    assert si_snr(tone, tone) > 60  # identical
    torch.testing.assert_close(si_snr(0.3 * tone + noise, tone), si_snr(tone + noise / 0.3, tone))
    assert 12 < si_snr(tone + noise, tone).item() < 20  # 0.35 rms over 0.05: ~17 dB
    assert stft_distance_db(tone, tone, 12000).item() == 0
    assert stft_distance_db(tone + noise, tone, 12000) > stft_distance_db(
        tone + noise / 10, tone, 12000
    )
    # μ-law at a high bit rate is nearly transparent; at a low one it is not
    rich = si_snr(mulaw_codec(tone, 12000, 12000 * 8, 8), tone).item()
    poor = si_snr(mulaw_codec(tone, 12000, 500, 4), tone).item()
    assert rich > 25 and poor < 5


def test_strides_must_fit_a_frame() -> None:
    params = {"preprocess": {"audio_rate": 12000}, "audio": {"strides": [3, 4]}}
    with pytest.raises(WillieError, match="hop of 12 samples, which must divide the 500"):
        validate_params(params)


def write_clips(root: Path, *, sound: bool) -> Path:
    """Clips whose sound is a tone per scene (or none), 9 frames of 500 samples."""
    t = np.arange(4500) / 12000
    for split, scenes in (("train", range(6)), ("val", range(6, 8))):
        with ClipShardWriter(
            root / split, (9, 16, 16), audio_rate=12000, audio_samples=4500
        ) as writer:
            for scene in scenes:
                tone = 0.4 * np.sin(2 * np.pi * (300 + 60 * scene) * t) * (t % 0.25 < 0.15)
                pcm = np.round(tone * 32767).astype(np.int16) if sound else None
                writer.add(ClipRow(np.zeros((9, 16, 16), np.uint8), scene, 0.0, np.arange(9), pcm))
    files = [{"file": "film.mp4", "has_audio": sound}]
    (root / "manifest.json").write_text(json.dumps({"files": files, "clips": {}}))
    return root


TINY = {
    "channels": 4,
    "strides": [2, 5, 5],
    "dilations": [1],
    "batch_size": 2,
    "max_steps": 4,
    "warmup_steps": 1,
    "eval_clips": 2,
    "device": "cpu",
}


def test_stage_trains_publishes_and_loads(tmp_path: Path) -> None:
    clips = write_clips(tmp_path / "clips", sound=True)
    cfg = AudioConfig(**TINY, disc_start=2)  # the GAN's steps run too
    metrics = train_audio_tokenizer(cfg, clips, tmp_path / "out")
    assert metrics["steps"] == 4 and metrics["hop"] == 50 and metrics["measured_on_val"] == 1
    assert {"si_snr", "stft_distance_db", "baseline_si_snr", "bits_per_second"} <= set(metrics)
    assert metrics["bits_per_second"] == pytest.approx(12000 / 50 * np.log2(1000))
    codec = load_audio_tokenizer(tmp_path / "out")
    assert codec is not None and codec.arch.hop == 50
    assert codec.encode(torch.zeros(1, 1, 4500)).shape == (1, 90, 1)
    assert (tmp_path / "out" / "recon.wav").stat().st_size > 4 * 4500  # clips + recon, 16-bit
    assert (tmp_path / "out" / "recon.png").read_bytes()[:4] == b"\x89PNG"


def test_a_silent_corpus_publishes_a_silent_model(tmp_path: Path) -> None:
    clips = write_clips(tmp_path / "clips", sound=False)
    metrics = train_audio_tokenizer(AudioConfig(**TINY), clips, tmp_path / "out")
    assert metrics["silent"] == 1
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["silent"] and "film.mp4" in config["reason"]
    assert load_audio_tokenizer(tmp_path / "out") is None
    assert "No model was trained" in (tmp_path / "out" / "MODEL_CARD.md").read_text()
    assert (tmp_path / "out" / "recon.png").is_file()  # every declared output exists


def test_each_latent_frame_gets_the_tokens_of_its_frames() -> None:
    from willie.tokenizer.tokenize import audio_groups

    frames, steps, codebooks = 9, 2, 1  # 9 frames: latent frames 0 | 1–4 | 5–8
    indices = np.arange(frames * steps * codebooks).reshape(-1, codebooks)  # step s: token s
    groups = audio_groups(indices, steps, latent_frames=3, nosound=-1)
    assert groups.shape == (3, 8)
    assert groups[0].tolist() == [-1] * 6 + [0, 1]  # frame 0's two steps, after NOSOUND
    assert groups[1].tolist() == list(range(2, 10))  # frames 1..4
    assert groups[2].tolist() == list(range(10, 18))  # frames 5..8


def test_the_sound_frechet_tells_a_tune_from_noise() -> None:
    from willie.evaluation.distribution import frechet_distance
    from willie.evaluation.sound import mel_statistics

    rng = np.random.default_rng(0)
    t = np.arange(4500) / 12000

    def tones(n: int, hz: float) -> torch.Tensor:
        phases = rng.uniform(0, 2 * np.pi, (n, 1))
        gain = rng.uniform(0.2, 0.4, (n, 1))
        return torch.from_numpy(gain * np.sin(2 * np.pi * hz * t + phases)).float()

    real = mel_statistics(tones(40, 700), 12000)
    same = frechet_distance(mel_statistics(tones(40, 700), 12000), real)
    other = frechet_distance(mel_statistics(tones(40, 1400), 12000), real)
    noise = frechet_distance(mel_statistics(0.3 * torch.randn(40, 4500), 12000), real)
    assert same < 0.1 * other and same < 0.1 * noise


def test_onset_sync_sees_sound_and_picture_change_together() -> None:
    from willie.evaluation.sound import onset_sync

    rng = np.random.default_rng(0)
    T, spf = 240, 500
    events = rng.choice(T, 20, replace=False)
    frames = np.zeros((T, 8, 8))
    level = 0.0
    for t in range(T):  # the picture jumps at each event, and holds
        level += 50.0 if t in events else 0.0
        frames[t] = level % 255
    sound = 0.01 * rng.standard_normal(T * spf)
    for t in events:  # a toot starts with each jump
        sound[t * spf : (t + 2) * spf] += 0.5 * np.sin(np.arange(2 * spf) * 0.3)
    together = onset_sync(frames, sound)
    apart = onset_sync(frames, np.roll(sound, 40 * spf))  # the same sound, 40 frames late
    assert together > 0.5 and abs(apart) < 0.2
    assert np.isnan(onset_sync(frames[:20], sound[: 20 * spf]))  # too short to tell


def _puffing_film(T: int, period: int, rate: int, late: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """64×64 frames: waves scrolling steadily across the bottom, and a stack whose puff is born
    every `period` frames (a dark blob in one 8×8 cell, drifting up slowly, as the film's do at
    64×64: ~0.3 px a frame); a band tune at 220–330 Hz
    under a 700 Hz toot `late` frames after each puff."""
    rng = np.random.default_rng(0)
    spf = rate // 24
    frames = np.full((T, 64, 64), 200.0)
    y, x = np.mgrid[:64, :64]
    for t in range(T):
        frames[t, 40:] = 120 + 40 * np.sin((x[40:] + 3 * t) / 4.0)  # steady motion everywhere
        for born in range(t - t % period, -1, -period)[:3]:  # the last 3 puffs, rising
            cy, cx = 20 - (t - born) // 3, 12
            frames[t][(y - cy) ** 2 + (x - cx) ** 2 <= 9] = 60
    frames += rng.normal(0, 3, frames.shape)
    time = np.arange(T * spf) / rate
    sound = 0.1 * np.sin(2 * np.pi * np.where((time * 2).astype(int) % 2, 220, 330) * time)
    for born in range(0, T, period):
        lo = (born + late) * spf
        n = min(3 * spf, len(sound) - lo)
        if n > 0:
            toot = np.sin(2 * np.pi * 700 * time[:n]) * np.exp(-time[:n] / 0.05)
            sound[lo : lo + n] += 0.5 * toot
    return frames, sound + 0.005 * rng.standard_normal(len(sound))


def test_toot_sync_hears_the_whistle_where_the_stack_puffs() -> None:
    """Periodic puffs and toots (as the synthetic film's): together the score is high; the same
    toots half a period late score about chance, though a fixed chance lag of one period would
    have called them in sync too."""
    from willie.evaluation.sound import toot_sync

    rate, T = 12000, 240
    together = toot_sync(*_puffing_film(T, 9, rate), rate)
    late = toot_sync(*_puffing_film(T, 9, rate, late=4), rate)
    assert together > 0.15 and abs(late) < 0.08, (together, late)
    frames, sound = _puffing_film(T, 9, rate)
    assert np.isnan(toot_sync(frames[:12], sound, rate))  # too short to tell
