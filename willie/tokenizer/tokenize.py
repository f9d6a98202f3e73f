"""The `tokenize` stage: every clip of both splits → memory-mappable token arrays.

    data/tokens/{train,val}/tokens.npy       [clips, t, h, w] (uint16, or int32 past 65,536 codes)
    data/tokens/{train,val}/scene.npy        [clips] scene id of each clip
    data/tokens/{train,val}/start_frame.npy  [clips] first frame in the 24 fps sequence
    data/tokens/manifest.json                codebook, levels, latent shape, tokenizer sha256

Clips keep their shard order (scene by scene, in time), so consecutive clips of a scene can
be chained into longer token streams.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from willie.atomic import atomic_path, write_json
from willie.checkpoint import load_artifact_config
from willie.checksums import file_checksums
from willie.config import TokenizerConfig
from willie.data import SPLITS, ClipDataset
from willie.engine import autocast, resolve_device
from willie.tokenizer.fsq import codebook_usage
from willie.tokenizer.model import load_tokenizer


def token_dtype(codebook_size: int) -> np.dtype:
    return np.dtype(np.uint16 if codebook_size <= 1 << 16 else np.int32)


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
            (temp / split).mkdir(parents=True)
            tokens = np.lib.format.open_memmap(
                temp / split / "tokens.npy", mode="w+", dtype=dtype, shape=(len(dataset), *latent)
            )
            loader = DataLoader(dataset, batch_size=cfg.batch_size, num_workers=cfg.num_workers)
            done = 0
            with torch.inference_mode(), autocast(device):
                for clips in loader:
                    indices = tokenizer.encode(clips.to(device))  # [B, t, h, w]
                    tokens[done : done + len(indices)] = indices.cpu().numpy().astype(dtype)
                    done += len(indices)
            tokens.flush()
            shards = dataset.shards
            np.save(temp / split / "scene.npy", shards.scene.astype(np.int32))
            np.save(temp / split / "start_frame.npy", shards.frame_indices[:, 0].astype(np.int32))
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
                "tokenizer_sha256": file_checksums(tokenizer_dir / "model.safetensors").sha256,
            },
        )
    total = sum(counts.values())
    return {
        "clips_train": counts["train"],
        "clips_val": counts["val"],
        "tokens_per_clip": int(np.prod(latent)),
        "codebook_usage_train": round(usage["train"].usage, 4),
        "codebook_usage_val": round(usage["val"].usage, 4),
        "clips_per_s": round(total / seconds, 2),
    }
