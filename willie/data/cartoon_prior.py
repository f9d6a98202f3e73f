"""The synthetic cartoon as extra training clips: another film of the same world.

Trained on one shot of the real film, the tokenizer sees a few hundred frames of one set-up
and learns to encode those. A share of its batches drawn from the synthetic cartoon
(`willie.data.synthetic`, rendered with a seed of its own) shows it ink lines, flat blacks
and whites and shapes in many arrangements. After 1,200 steps it halves the memorization
gap, and the boat it never saw gains 0.44 dB in the sweep and 0.55 dB in the pipeline — but
the wheel loses 0.15 dB (the cartoon draws boats, not a mouse at a wheel in close-up) and the
samples decoded by it were no nearer the film, so the preset keeps it off
(`tokenizer.synthetic: 0`; README, "The tokenizer on footage it never saw").

The cartoon goes through the preprocess stage's own code with the real clips' stored size,
length and stride, so both kinds of clip are framed alike.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import torch
from torch.utils.data import Dataset

from willie.atomic import read_json, write_json
from willie.config import PreprocessConfig
from willie.data.dataset import SPLITS, ClipDataset, spread
from willie.data.download import manifest_of
from willie.data.preprocess import run_preprocess
from willie.data.synthetic import render_synthetic_film
from willie.errors import WillieError


def cartoon_clips(like: ClipDataset, clips_dir: Path, *, seconds: float, seed: int) -> torch.Tensor:
    """[N, 1, T, h, w] in [-1, 1]: every clip of `seconds` of the cartoon drawn with `seed`,
    made as `clips_dir`'s clips were (stored size, clip length, stride) and read at `like`'s
    size. Raises before any work when the real clips are this very cartoon (same seed): its
    val scenes would then be trained on."""
    source = read_json(clips_dir / "manifest.json")
    drawn = source.get("source", {})
    if drawn.get("source") == "synthetic" and drawn.get("seed") == seed:
        raise WillieError(
            f"tokenizer.synthetic_seed ({seed}) is the seed of the synthetic film in "
            f"{clips_dir} (data.seed): the extra cartoon would hold its val scenes. Choose "
            "another tokenizer.synthetic_seed"
        )
    frames, height, width = like.shards.clip_shape
    settings = PreprocessConfig(
        size=(height, width), clip_frames=frames, stride=int(source["stride"])
    )
    return render_clips(settings, like.size, seconds=seconds, seed=seed)


def render_clips(
    settings: PreprocessConfig, size: tuple[int, int], *, seconds: float, seed: int
) -> torch.Tensor:
    """[N, 1, T, h, w] in [-1, 1]: every clip (train and val alike, by scene, in time order)
    of `seconds` of the cartoon drawn with `seed`, through the preprocess stage with
    `settings`, read at `size`."""
    with tempfile.TemporaryDirectory(prefix="willie-cartoon-") as tmp:
        raw, out = Path(tmp) / "raw", Path(tmp) / "clips"
        raw.mkdir()
        render_synthetic_film(raw / "cartoon.mp4", seed=seed, seconds=seconds)
        write_json(raw / "manifest.json", manifest_of(raw, ["cartoon.mp4"]))
        run_preprocess(settings, raw, out)
        items = [
            (int(scene), d, i)
            for d in (ClipDataset(out, split, size=size) for split in SPLITS)
            for i, scene in enumerate(d.shards.scene.tolist())
        ]
        items.sort(key=lambda item: item[0])  # stable: by scene, each in time order
        return torch.stack([d[i] for _, d, i in items])  # type: ignore[misc]


class Mixture(Dataset[torch.Tensor]):
    """The real clips and the extra ones, about `share` of the items extra.

    Every extra clip is an item, a small real set repeated to keep the share; a large real set
    repeats the extra clips instead. Deterministic, so a resumed run draws
    the same batches as an uninterrupted one."""

    def __init__(self, real: Dataset[torch.Tensor], extra: torch.Tensor, share: float) -> None:
        if not 0 < share < 1:
            raise ValueError(f"share must be in (0, 1), got {share}")
        self.real, self.extra = real, extra
        self.real_count = len(real)  # type: ignore[arg-type]
        # repeats of the real set so that all extra clips fit at this share
        self.repeats = max(1, math.ceil(len(extra) * (1 - share) / (share * self.real_count)))
        wanted = max(1, round(share / (1 - share) * self.repeats * self.real_count))
        if wanted <= len(extra):
            self.extra_index = spread(len(extra), wanted)
        else:  # a large real set: the extra clips repeat
            self.extra_index = [i % len(extra) for i in range(wanted)]

    @property
    def share(self) -> float:
        """The extra clips' share of the items, as built."""
        return len(self.extra_index) / len(self)

    def __len__(self) -> int:
        return self.repeats * self.real_count + len(self.extra_index)

    def __getitem__(self, index: int) -> torch.Tensor:
        reals = self.repeats * self.real_count
        if index < reals:
            return self.real[index % self.real_count]
        return self.extra[self.extra_index[index - reals]]
