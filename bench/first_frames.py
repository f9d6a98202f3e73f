"""Does a transformer draw a scene's first frame? Bits/token per latent frame, and a picture.

    python bench/first_frames.py --run ../runs/real --model stages/transformer --out first.png
    python bench/first_frames.py --run ../runs/real --model bench/.runs/transformer/base \\
        --checkpoint bench/.runs/transformer/base/checkpoints/<fp>/step-00000400.pt

An unconditional sample starts from the scene-start token: its first latent frame has no
frames before it and no anchor, so it shows whether the model knows what the film's first
frames look like. For the train and the val streams (each clip from the scene start, as
`transformer.restarts` trains them) this prints the bits/token of the pictures' tokens in latent
frames 0, 1 and 2 — the first frame beside the ones that have frames before them — and writes
a PNG: `--samples` unconditional first frames at `--temperature` (top-p `--top-p`), decoded by
the run's tokenizer, above as many real first frames of train clips through the same tokenizer.
`--checkpoint` scores a training checkpoint's EMA weights instead of the published ones.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from willie.generation.sample import load_generator
from willie.training.checkpoint import load_checkpoint
from willie.transformer.data import TokenStreams
from willie.transformer.generate import generate, sampler
from willie.transformer.model import TokenTransformer


def bits_by_latent_frame(model: TokenTransformer, streams: TokenStreams, frames: int = 3) -> list:
    """Mean bits/token of the video tokens in each of the first `frames` latent frames of up to
    64 streams (BOS first), every token predicted from the real ones before it."""
    layout = model.arch.layout
    period = layout.period
    long = [s for s in streams.streams if len(s) > frames * period]
    picks = long[:: max(1, len(long) // 64)][:64]
    stream = torch.from_numpy(np.stack([s[: frames * period + 1] for s in picks]))
    ids, targets = stream[:, :-1], stream[:, 1:]
    L = ids.shape[1]
    anchors, slots = layout.anchors(stream, 0, L), layout.slots(0, L)
    with torch.inference_mode():
        before = model.frame_before(ids, anchors, slots)
        h = model.hidden(ids, before=before, slots=slots)
        bits = []
        for f in range(frames):
            video = slice(f * period, f * period + layout.video)
            nats = model.head.loss(h[:, video], targets[:, video], before[:, video])
            bits.append(round(float(nats) / math.log(2), 2))
    return bits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="a workspace past `tokenize`")
    parser.add_argument("--model", type=Path, required=True, help="a published transformer")
    parser.add_argument("--checkpoint", type=Path, help="its training checkpoint to use instead")
    parser.add_argument("--out", type=Path, default=Path("first_frames.png"))
    parser.add_argument("--samples", type=int, default=6)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--top-p", type=float, default=0.95)
    args = parser.parse_args()
    models = load_generator(args.run / "stages/tokenizer", args.model, None, torch.device("cpu"))
    model = models.transformer
    if args.checkpoint:
        state = load_checkpoint(args.checkpoint)["states"]["transformer_ema"]["module"]
        model.load_state_dict(state)
    model.eval()
    layout = model.arch.layout
    tokens_dir = args.run / "data/tokens"
    for split in ("train", "val"):
        streams = TokenStreams(tokens_dir, split, restarts=True)
        bits = bits_by_latent_frame(model, streams)
        print(f"{split}: bits/token of latent frames 0, 1, 2:", bits)

    def first_frames(codes: torch.Tensor) -> torch.Tensor:
        """stream ids [S, 2 · period] (no BOS) -> the decoded first frames, side by side."""
        video, _ = layout.split(codes)
        latent = video.reshape(len(codes), 2, *models.latent_hw)
        with torch.inference_mode():
            frames = models.tokenizer.decode(latent).clamp(-1, 1)[:, 0, 0]  # [S, H, W]
        return torch.cat(list(frames), dim=1)

    pick = sampler(
        temperature=args.temperature, top_p=args.top_p, generator=torch.Generator().manual_seed(0)
    )
    bos = torch.full((args.samples, 1), model.arch.bos)
    drawn = generate(model, bos, 2 * layout.period, pick)[:, 1:]
    real = TokenStreams(tokens_dir, "train", restarts=True).streams
    real = [s for s in real if len(s) > 2 * layout.period]
    rows = real[:: max(1, len(real) // args.samples)][: args.samples]
    real_ids = torch.from_numpy(np.stack([s[1 : 1 + 2 * layout.period] for s in rows]))
    grid = torch.cat([first_frames(drawn), first_frames(real_ids)], dim=0)
    picture = Image.fromarray(((grid + 1) * 127.5).round().byte().numpy())
    picture.resize((2 * picture.width, 2 * picture.height), Image.NEAREST).save(args.out)
    print(f"{args.out}: {args.samples} unconditional first frames above real ones")


if __name__ == "__main__":
    main()
