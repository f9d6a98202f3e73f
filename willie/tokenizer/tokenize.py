"""The `tokenize` stage: every clip of both splits → memory-mappable token arrays.

    data/tokens/{train,val}/tokens.npy       [clips, t, h, w] (uint16, or int32 past 65,536 codes)
    data/tokens/{train,val}/scene.npy        [clips] scene id of each clip
    data/tokens/{train,val}/start_frame.npy  [clips] first frame in the 24 fps sequence
    data/tokens/{train,val}/variant.npy      [clips] 0: the footage; k ≥ 1: its k-th copy
    data/tokens/{train,val}/audio_tokens.npy [clips, t, G] the sound of each latent frame
    data/tokens/manifest.json                codebook, levels, latent shape, tokenizer sha256

With a trained audio tokenizer (not a silent one), each latent frame also gets the G audio
tokens of its frames' sound (`audio_groups`): latent j ≥ 1 the tokens of frames 4j − 3 .. 4j,
latent 0 those of frame 0 after G − (its tokens) NOSOUND tokens; a clip without sound is all
NOSOUND (id = the audio codebook size). Copies share the footage's sound.

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
from willie.audio.model import AudioTokenizer, load_audio_tokenizer
from willie.checksums import file_checksums
from willie.config import TokenizerConfig
from willie.data.dataset import SPLITS, ClipDataset, pcm_to_unit
from willie.data.shards import ClipShards
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


def audio_groups(
    indices: np.ndarray, steps_per_frame: int, latent_frames: int, nosound: int
) -> np.ndarray:
    """[n, K] audio tokens of a clip's 1 + 4(t − 1) frames → [t, G] per latent frame,
    G = 4 · steps_per_frame · K: latent j ≥ 1 holds frames 4j − 3 .. 4j, latent 0 frame 0,
    right-aligned after NOSOUND."""
    per_frame = indices.reshape(-1, steps_per_frame * indices.shape[1])  # [frames, steps·K]
    group = 4 * per_frame.shape[1]
    out = np.full((latent_frames, group), nosound, dtype=indices.dtype)
    out[0, group - per_frame.shape[1] :] = per_frame[0]
    out[1:] = per_frame[1:].reshape(latent_frames - 1, group)
    return out


def ungroup_audio(groups: np.ndarray, steps_per_frame: int, codebooks: int) -> np.ndarray:
    """[t, G] audio symbols per latent frame → [n, K] per step of the 1 + 4(t − 1) frames: the
    inverse of `audio_groups` (latent 0's NOSOUND lead-in dropped)."""
    first = groups[0, groups.shape[1] - steps_per_frame * codebooks :]
    return np.concatenate([first, groups[1:].reshape(-1)]).reshape(-1, codebooks)


def tokenize_audio(
    codec: AudioTokenizer,
    shards: ClipShards,
    latent_frames: int,
    batch_size: int,
    device: torch.device,
) -> np.ndarray:
    """[clips, t, G] audio tokens of every clip of `shards` (all NOSOUND where it has none)."""
    nosound = codec.codebook_size
    per_frame = shards.audio_per_frame
    steps_per_frame = per_frame // codec.arch.hop
    group = 4 * steps_per_frame * codec.arch.codebooks
    out = np.full((len(shards), latent_frames, group), nosound, np.int64)
    with_sound = np.flatnonzero(shards.has_audio)
    for lo in range(0, len(with_sound), batch_size):
        rows = with_sound[lo : lo + batch_size]
        audio = torch.stack([pcm_to_unit(shards.audio(int(i))) for i in rows])[:, None]
        indices = codec.encode(audio.to(device)).cpu().numpy()  # [B, n, K]
        for row, tokens in zip(rows, indices, strict=True):
            out[row] = audio_groups(tokens, steps_per_frame, latent_frames, nosound)
    return out


def run_tokenize(
    cfg: TokenizerConfig,
    clips_dir: str | Path = "data/clips",
    tokenizer_dir: str | Path = "stages/tokenizer",
    out_dir: str | Path = "data/tokens",
    audio_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Tokenize both splits; with `audio_dir` (a published audio tokenizer), their sound too."""
    clips_dir, tokenizer_dir = Path(clips_dir), Path(tokenizer_dir)
    device = resolve_device(cfg.device)
    tokenizer = load_tokenizer(tokenizer_dir, device)
    codec = load_audio_tokenizer(audio_dir, device) if audio_dir is not None else None
    size = load_artifact_config(tokenizer_dir, "train_tokenizer")["size"]  # as trained
    dtype = token_dtype(tokenizer.codebook_size)
    started = time.perf_counter()
    counts: dict[str, int] = {}
    with_audio: dict[str, int] = {}
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
            with torch.inference_mode(), autocast(device, cfg.precision):
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
            if codec is not None:
                with torch.inference_mode():
                    sound = tokenize_audio(codec, shards, latent[0], cfg.batch_size, device)
                sound_dtype = token_dtype(codec.codebook_size + 1)
                np.save(
                    temp / split / "audio_tokens.npy",
                    np.tile(sound, (copies, 1, 1)).astype(sound_dtype),
                )
                with_audio[split] = int(shards.has_audio.sum())
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
                "audio": None
                if codec is None
                else {
                    "codebook_size": codec.codebook_size,
                    "levels": list(codec.arch.levels),
                    "codebooks": codec.arch.codebooks,
                    "nosound": codec.codebook_size,
                    "group": int(sound.shape[-1]),
                    "hop": codec.arch.hop,
                    "clips_with_audio": with_audio,
                    "tokenizer_sha256": file_checksums(
                        Path(audio_dir) / "model.safetensors"
                    ).sha256,
                },
            },
        )
    total = counts["train"] * (1 + cfg.token_copies) + counts["val"]  # clips encoded
    audio_metrics = (
        {}
        if codec is None
        else {
            "audio_tokens_per_latent_frame": int(sound.shape[-1]),
            "clips_with_audio_train": with_audio["train"],
            "clips_with_audio_val": with_audio["val"],
        }
    )
    return audio_metrics | {
        "clips_train": counts["train"],
        "train_copies": cfg.token_copies,
        "clips_val": counts["val"],
        "tokens_per_clip": int(np.prod(latent)),
        "codebook_usage_train": round(usage["train"].usage, 4),
        "codebook_usage_val": round(usage["val"].usage, 4),
        "clips_per_s": round(total / seconds, 2),
    }
