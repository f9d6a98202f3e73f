"""The tokenizer must encode footage it never saw, not only its training clips.

A tiny tokenizer, built from the stage's config and trained with the stage's reconstruction
loss for a few hundred steps on the scenes of one synthetic film, reconstructs the scenes of
another (the same kinds of scene — river, pier, paddle close-up, helm — drawn from other seeds:
other positions, speeds, tones, clouds, camera heights, mirroring and order) above what a flat
frame of the right mean gray scores. Deterministic (seeded, one thread); about half a minute.

Measured on the film of 3-s scenes (2026-11-29; 32×32, channels 16, 300 steps): the preset's
architecture and loss 18.03 dB unseen (SSIM 0.217; train 19.87), flat frames 16.37 dB; the
first architecture and loss (GroupNorm, blur-pool down-sampling, L1, no shift) 16.12 dB (SSIM
0.125; train 21.28): below flat frames — it learned its training scenes' backgrounds instead of
an encoding. (On the film of 5-s scenes without the helm: 19.17 dB against 15.99 and 17.37.)
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from willie.config import TokenizerConfig
from willie.data.dataset import area_resize, to_unit_range
from willie.data.synthetic import PICTURE_BOX, plan_scenes, render_frames
from willie.quality import psnr, ssim
from willie.tokenizer.losses import reconstruction_loss
from willie.tokenizer.model import VideoTokenizer
from willie.tokenizer.train import architecture

SIZE, FRAMES = 32, 9


def film_clips(seed: int, seconds: float, stride: int = 4) -> torch.Tensor:
    """Clips [N, 1, 9, 32, 32] in [-1, 1] of a synthetic film, never across its cuts."""
    x, y, w, h = PICTURE_BOX
    left = x + (w - h) // 2  # the centre square of the 4:3 picture
    film = render_frames(seed=seed, seconds=seconds)
    frames = np.stack([f[y : y + h, left : left + h] for f in film])
    video = area_resize(to_unit_range(torch.from_numpy(frames)), (SIZE, SIZE))  # [T, 32, 32]
    clips = [
        video[start : start + FRAMES]
        for scene in plan_scenes(seed=seed, seconds=seconds)
        for start in range(scene.start, scene.start + scene.frames - FRAMES + 1, stride)
    ]
    return torch.stack(clips).unsqueeze(1)


@pytest.fixture(scope="module")
def trained() -> tuple[VideoTokenizer, torch.Tensor, torch.Tensor]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # deterministic
    try:
        torch.manual_seed(0)
        train, unseen = film_clips(seed=1, seconds=16), film_clips(seed=7, seconds=16)
        cfg = TokenizerConfig(size=SIZE, channels=16)
        model = VideoTokenizer(architecture(cfg)).train()
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        order = torch.randint(len(train), (STEPS, 4), generator=torch.Generator().manual_seed(0))
        for batch in order:
            clips = train[batch]
            loss = reconstruction_loss(model(clips)[0], clips, cfg.recon_loss)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return model.eval(), train, unseen
    finally:
        torch.set_num_threads(threads)


STEPS = 300


def scores(model: VideoTokenizer, clips: torch.Tensor) -> tuple[float, float]:
    with torch.no_grad():
        recon = model(clips)[0].clamp(-1, 1)
    return float(psnr(recon, clips).mean()), float(ssim(recon, clips).mean())


def test_reconstructs_a_film_it_never_saw(trained) -> None:
    model, train, unseen = trained
    flat = unseen.mean(dim=(-2, -1), keepdim=True).expand_as(unseen)  # each frame's mean gray
    baseline = float(psnr(flat, unseen).mean())
    unseen_psnr, unseen_ssim = scores(model, unseen)
    train_psnr, _ = scores(model, train)
    print(
        f"train {train_psnr:.2f} dB, unseen {unseen_psnr:.2f} dB SSIM {unseen_ssim:.3f}, "
        f"flat frames {baseline:.2f} dB"
    )
    assert unseen_psnr > baseline + FLOOR_DB
    assert unseen_ssim > FLOOR_SSIM
    assert train_psnr - unseen_psnr < MAX_GAP_DB


FLOOR_DB = 1.0  # above flat frames; measured 1.67 (the first architecture: −0.25)
FLOOR_SSIM = 0.17  # measured 0.217 (the first architecture: 0.125)
MAX_GAP_DB = 3.5  # train − unseen PSNR; measured 1.83 (the first architecture: 5.16)
