"""The `tokenize` stage: every clip of both splits → memory-mappable token arrays.

    data/tokens/{train,val}/tokens.npy       [clips, t, h, w] (uint16, or int32 past 65,536 codes)
    data/tokens/{train,val}/scene.npy        [clips] scene id of each clip
    data/tokens/{train,val}/start_frame.npy  [clips] first frame in the 24 fps sequence
    data/tokens/{train,val}/variant.npy      [clips] 0: the footage; k ≥ 1: its k-th copy
    data/tokens/manifest.json                codebook, levels, latent shape, tokenizer sha256

Clips keep their shard order (scene by scene, in time), so consecutive clips of a scene can
be chained into longer token streams.

With `tokenizer.token_copies` = k the train split is tokenized 1 + k times: the footage, then
k copies of it, each mirrored (odd copies) and shifted by one (dy, dx) ≤ `tokenizer.shift` px
as a whole, so that its clips still chain. A shifted drawing tokenizes to other codes: the
transformer sees each motion in 1 + k token spellings and cannot learn one by heart.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from willie.atomic import atomic_path, write_json
from willie.checksums import file_checksums
from willie.config import TokenizerConfig
from willie.data.dataset import SPLITS, ClipDataset
from willie.tokenizer.augment import apply_augmentation
from willie.tokenizer.fsq import codebook_usage
from willie.tokenizer.model import load_tokenizer
from willie.training.checkpoint import load_artifact_config
from willie.training.engine import autocast, resolve_device


def token_dtype(codebook_size: int) -> np.dtype:
    return np.dtype(np.uint16 if codebook_size <= 1 << 16 else np.int32)


def copy_transforms(copies: int, shift: int) -> list[torch.Tensor]:
    """[1, 3] (mirror, dy, dx) per variant: the footage as it is, then `copies` copies, odd
    ones mirrored, each shifted by a fixed random offset (seeded: the same tokens every run)."""
    generator = torch.Generator().manual_seed(0)
    transforms = [torch.zeros(1, 3, dtype=torch.long)]
    for k in range(1, copies + 1):
        offset = torch.randint(-shift, shift + 1, (1, 2), generator=generator)
        transforms.append(torch.cat([torch.tensor([[k % 2]]), offset], dim=1))
    return transforms


def run_tokenize(
    cfg: TokenizerConfig,
    clips_dir: str | Path = "data/clips",
    tokenizer_dir: str | Path = "stages/tokenizer",
    out_dir: str | Path = "data/tokens",
) -> dict[str, Any]:
    clips_dir, tokenizer_dir = Path(clips_dir), Path(tokenizer_dir)
    device = resolve_device(cfg.device)
    tokenizer = load_tokenizer(tokenizer_dir, device)
    size = load_artifact_config(tokenizer_dir, "train_tokenizer")["size"]  # as trained
    dtype = token_dtype(tokenizer.codebook_size)
    started = time.perf_counter()
    counts: dict[str, int] = {}
    usage = {}
    with atomic_path(out_dir) as temp:
        for split in SPLITS:
            dataset = ClipDataset(clips_dir, split, size=size)
            latent = tokenizer.latent_shape(*dataset.clip_shape)
            variants = copy_transforms(cfg.token_copies if split == "train" else 0, cfg.shift)
            (temp / split).mkdir(parents=True)
            rows = len(dataset) * len(variants)
            tokens = np.lib.format.open_memmap(
                temp / split / "tokens.npy", mode="w+", dtype=dtype, shape=(rows, *latent)
            )
            loader = DataLoader(dataset, batch_size=cfg.batch_size, num_workers=cfg.num_workers)
            done = 0
            with torch.inference_mode(), autocast(device):
                for transform in variants:
                    for clips in loader:
                        clips = apply_augmentation(
                            clips, transform.expand(len(clips), -1), cfg.shift
                        )
                        indices = tokenizer.encode(clips.to(device))  # [B, t, h, w]
                        tokens[done : done + len(indices)] = indices.cpu().numpy().astype(dtype)
                        done += len(indices)
            tokens.flush()
            shards, copies = dataset.shards, len(variants)
            np.save(temp / split / "scene.npy", np.tile(shards.scene.astype(np.int32), copies))
            starts = shards.frame_indices[:, 0].astype(np.int32)
            np.save(temp / split / "start_frame.npy", np.tile(starts, copies))
            variant = np.repeat(np.arange(copies, dtype=np.int32), len(dataset))
            np.save(temp / split / "variant.npy", variant)
            counts[split] = len(dataset)
            usage[split] = codebook_usage(
                torch.from_numpy(tokens.astype(np.int64)), tokenizer.codebook_size
            )
            del tokens
        seconds = time.perf_counter() - started
        write_json(
            temp / "manifest.json",
            {
                "codebook_size": tokenizer.codebook_size,
                "levels": list(tokenizer.arch.levels),
                "latent_shape": list(latent),
                "clip_shape": list(dataset.clip_shape),
                "dtype": dtype.name,
                "clips": counts,
                "train_copies": cfg.token_copies,
                "tokenizer_sha256": file_checksums(tokenizer_dir / "model.safetensors").sha256,
            },
        )
    total = counts["train"] * (1 + cfg.token_copies) + counts["val"]  # clips encoded
    return {
        "clips_train": counts["train"],
        "train_copies": cfg.token_copies,
        "clips_val": counts["val"],
        "tokens_per_clip": int(np.prod(latent)),
        "codebook_usage_train": round(usage["train"].usage, 4),
        "codebook_usage_val": round(usage["val"].usage, 4),
        "clips_per_s": round(total / seconds, 2),
    }
