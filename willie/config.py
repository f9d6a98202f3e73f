"""Typed, validated configuration: one pydantic model per `params.yaml` section.

Each stage reads only its own section. Validation happens once, before any work, and a bad
value fails with a message that names the key, the value and what is allowed. Library code
receives these typed objects, never raw dicts.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from willie.errors import WillieError

PARAMS_FILE = "params.yaml"

# Training and inference precision (willie.training.engine.uses_bf16): auto is bf16 autocast
# on CUDA and fp32 on the CPU; bf16 forces it on the CPU too (fast where the CPU has AMX).
Precision = Literal["auto", "fp32", "bf16"]


class Section(BaseModel):
    """A `params.yaml` section: unknown keys and silent type coercions are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class DataConfig(Section):
    """`data`: where the film comes from (the `download` stage)."""

    source: Literal["archive.org", "file", "synthetic"] = "archive.org"
    path: str | list[str] | None = Field(
        None,
        description="source=file: a video, a list of videos, or a directory (its videos, by name)",
    )
    seed: int = Field(0, ge=0, description="seed of the synthetic cartoon")
    # archive.org
    item: str = Field("steamboat-willie-mickey", min_length=1)
    file_name: str | list[str] | None = Field(
        None, description="these files of the item (one or a list), not the best video"
    )
    archive_url: str = Field("https://archive.org", description="base URL of the archive")
    retries: int = Field(5, ge=0, le=100)
    timeout_s: float = Field(30.0, gt=0)
    # synthetic
    synthetic_seconds: float = Field(24.0, gt=0, le=3600)

    @field_validator("archive_url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if not url.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return url.rstrip("/")

    @field_validator("path", "file_name")
    @classmethod
    def _names(cls, value: str | list[str] | None) -> str | list[str] | None:
        names = [value] if isinstance(value, str) else value or []
        if isinstance(value, list) and not value:
            raise ValueError("an empty list names no file: give at least one, or leave it unset")
        if any(not name.strip() for name in names):
            raise ValueError("a file name must not be empty")
        if len(set(names)) < len(names):
            raise ValueError("names a file twice")
        return value

    @property
    def paths(self) -> list[str]:
        """`path` as a list (empty when unset)."""
        return [self.path] if isinstance(self.path, str) else list(self.path or [])

    @property
    def file_names(self) -> list[str]:
        """`file_name` as a list (empty: pick the item's best video)."""
        return [self.file_name] if isinstance(self.file_name, str) else list(self.file_name or [])

    @model_validator(mode="after")
    def _path_for_file_source(self) -> DataConfig:
        if self.source == "file" and not self.path:
            raise ValueError(
                "data.source=file needs data.path: a video, a list of videos or a directory "
                "(e.g. dvc exp run -S data.source=file -S 'data.path=[/films/a.mp4,/films/b.mp4]')"
            )
        return self


def _height_width(size: Any) -> tuple[int, int]:
    """An int (square) or [height, width], each a positive multiple of 8."""
    if isinstance(size, int) and not isinstance(size, bool):
        size = (size, size)
    if (
        not isinstance(size, (list, tuple))
        or len(size) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in size)
    ):
        raise ValueError("must be an int or [height, width] of ints")
    if any(v < 8 or v % 8 for v in size):
        raise ValueError(
            "height and width must each be a positive multiple of 8 (the tokenizer downsamples 8×)"
        )
    return (size[0], size[1])


class PreprocessConfig(Section):
    """`preprocess`: decoded film → Arrow clip shards (the `preprocess` stage)."""

    size: Annotated[tuple[int, int], BeforeValidator(_height_width)] = Field(
        (128, 128), description="stored frame size: an int (square) or [height, width]"
    )
    clip_frames: int = Field(17, description="frames per clip, 1 + 4k")
    stride: int = Field(8, ge=1, description="frames between the starts of consecutive clips")
    val_fraction: float = Field(0.15, gt=0, lt=1)
    seed: int = Field(0, description="seed of the train/val split by scene")
    fps: float = Field(24.0, gt=0, le=120, description="the film's native frame rate")
    cut_threshold: float = Field(
        0.12, gt=0, lt=1, description="mean absolute frame difference (0..1) that marks a cut"
    )
    black_level: int = Field(24, ge=0, le=128, description="max brightness of letterbox bars")
    shard_clips: int = Field(256, ge=1, description="clips per Arrow shard")
    audio_rate: int = Field(
        12000, ge=4000, le=48000, description="each clip's soundtrack: mono samples per second"
    )

    @field_validator("clip_frames")
    @classmethod
    def _one_plus_4k(cls, frames: int) -> int:
        if frames < 5 or (frames - 1) % 4:
            raise ValueError(
                f"must be 1 + 4k with k ≥ 1 (5, 9, 13, 17, 33, …): the tokenizer encodes the "
                f"first frame alone and then 4 frames per latent frame; got {frames}"
            )
        return frames

    @model_validator(mode="after")
    def _whole_samples_per_frame(self) -> PreprocessConfig:
        per_frame = self.audio_rate / self.fps
        if per_frame != int(per_frame):
            fits = [r for r in (8000, 12000, 16000, 24000, 32000, 48000) if r / self.fps % 1 == 0]
            raise ValueError(
                f"audio_rate={self.audio_rate} gives {per_frame:.2f} samples per frame at "
                f"{self.fps:g} fps: a frame's sound (and a latent frame's, the audio tokens' "
                f"unit) must be whole samples; use one of {fits}"
            )
        return self

    @property
    def frame_size(self) -> tuple[int, int]:
        """(height, width) of the stored frames."""
        return self.size

    @property
    def audio_per_frame(self) -> int:
        """Soundtrack samples per video frame."""
        return round(self.audio_rate / self.fps)


class TrainingSection(Section):
    """Keys every training stage shares (the engine's settings)."""

    batch_size: int = Field(8, ge=1, description="global batch per optimizer step")
    max_steps: int = Field(1000, ge=1)
    lr: float = Field(3e-4, gt=0, le=1)
    grad_accum: int = Field(1, ge=1)
    warmup_steps: int = Field(100, ge=0)
    weight_decay: float = Field(0.0, ge=0)
    grad_clip: float | None = Field(1.0, gt=0)
    ema_decay: float = Field(0.999, ge=0, lt=1)
    checkpoint_every: int = Field(200, ge=1)
    log_every: int = Field(10, ge=1)
    eval_every: int = Field(0, ge=0, description="steps between val evaluations; 0: at the end")
    seed: int = Field(0, ge=0)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Precision = Field(
        "auto", description="auto: bf16 autocast on CUDA, fp32 on CPU; fp32 | bf16 force either"
    )
    compile: bool = Field(False, description="torch.compile the model (pays off on GPU)")
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes")

    def identity(self) -> dict[str, Any]:
        """The values that decide what training computes (for the checkpoint fingerprint):
        changing one trains afresh; changing how the run is observed (logging, checkpoint and
        evaluation cadence, eval set sizes, workers) resumes instead."""
        observed = {"log_every", "checkpoint_every", "num_workers"}
        return {
            k: v
            for k, v in self.model_dump(mode="json").items()
            if k not in observed and not k.startswith("eval_")
        }


class TokenizerConfig(TrainingSection):
    """`tokenizer`: the MAGVIT-v2 video tokenizer (`train_tokenizer` and `tokenize` stages)."""

    size: int = Field(64, description="tokenizer input frames (area-downsampled from the clips)")
    levels: int | list[int] = Field(
        [8, 5, 5, 5], description="FSQ levels: one int for every dim, or one per dim"
    )
    fsq_dims: int = Field(4, ge=1, le=16, description="FSQ dims when `levels` is an int")
    channels: int = Field(32, ge=8)
    channel_mults: list[int] = Field([1, 2, 2, 4], min_length=2)
    patch_size: int = Field(
        2, ge=1, description="space-to-depth of the input (1, 2, 4): 2 runs ~4× faster than 1"
    )
    spatial_downsample: Literal[4, 8] = Field(
        8, description="pixels per token side: 8 (size/8 tokens a side) or 4 (4× the tokens)"
    )
    num_res_blocks: int = Field(1, ge=0, description="residual blocks per level, each side")
    num_mid_blocks: int = Field(
        0, ge=0, description="extra residual blocks at the latent resolution, each side of FSQ"
    )
    norm: Literal["group", "channel", "none"] = Field(
        "none", description="normalization in the residual blocks (none generalizes best)"
    )
    space_down: Literal["blur", "s2d"] = Field(
        "s2d", description="spatial down-sampling: blur-pool + conv, or space-to-depth + 1×1"
    )
    time_down: Literal["blur", "s2d"] = Field(
        "s2d", description="time down-sampling: causal blur-pool + conv, or time-to-depth + 1×1"
    )
    recon_loss: Literal["l1", "l2"] = Field(
        "l2", description="l2 reconstructs unseen footage better (+1 dB PSNR, +0.06 SSIM)"
    )
    code_stability: float = Field(
        0.0,
        ge=0,
        description="weight of the change of each token's code from the latent frame before "
        "(`code_change_loss`): steadier codes for the transformer to predict",
    )
    flip: bool = Field(True, description="mirror half the training clips left-right")
    shift: int = Field(
        8, ge=0, description="translate training clips by up to this many pixels (reflected)"
    )
    token_copies: int = Field(
        0,
        ge=0,
        description="`tokenize`: extra tokenizations of the train split for the transformer, "
        "each the whole footage mirrored and/or shifted (≤ shift px)",
    )
    synthetic: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="share of the training clips drawn from the synthetic cartoon (another "
        "film of the same world, `willie.data.cartoon_prior`): ink lines and shapes in many "
        "arrangements, for footage the tokenizer never saw; 0: off",
    )
    synthetic_seconds: float = Field(
        60.0, gt=0, le=3600, description="length of that cartoon (rendered at each training)"
    )
    synthetic_seed: int = Field(
        1001, ge=0, description="its seed: keep it apart from data.seed (checked)"
    )
    disc_start: int = Field(
        500, ge=0, description="step at which the discriminator starts training"
    )
    gen_adv_start: int = Field(
        600, ge=0, description="step at which the generator's adversarial loss turns on"
    )
    adv_weight: float = Field(0.1, ge=0, description="adversarial weight (× the adaptive ratio)")
    adaptive_weight: bool = Field(True, description="scale by VQGAN's gradient-norm ratio")
    disc_channels: int = Field(32, ge=8)
    disc_lr: float | None = Field(None, gt=0, description="default: lr")
    r1_weight: float = Field(0.1, ge=0)
    r1_every: int = Field(4, ge=1, description="lazy R1: every N steps, scaled by N")
    lecam_weight: float = Field(0.001, ge=0)
    eval_clips: int = Field(64, ge=1, description="val clips for PSNR/SSIM/codebook metrics")

    @field_validator("size")
    @classmethod
    def _size_multiple_of_8(cls, size: int) -> int:
        return _height_width(size)[0]

    @field_validator("levels")
    @classmethod
    def _levels_at_least_2(cls, levels: int | list[int]) -> int | list[int]:
        values = [levels] if isinstance(levels, int) else levels
        if not values or any(v < 2 for v in values):
            raise ValueError("FSQ levels must be integers ≥ 2 (e.g. 8 or [8, 5, 5, 5])")
        return levels

    @model_validator(mode="after")
    def _shift_inside_the_frame(self) -> TokenizerConfig:
        if self.shift >= self.size // 2:
            raise ValueError(
                f"tokenizer.shift ({self.shift}) must be below half of tokenizer.size "
                f"({self.size}): the reflected border cannot reach past the frame's middle"
            )
        return self

    @model_validator(mode="after")
    def _generator_adversarial_after_discriminator(self) -> TokenizerConfig:
        if self.gen_adv_start < self.disc_start:
            raise ValueError(
                f"tokenizer.gen_adv_start ({self.gen_adv_start}) must be ≥ disc_start "
                f"({self.disc_start}): the generator's adversarial term needs a trained critic"
            )
        return self

    @property
    def fsq_levels(self) -> list[int]:
        return [self.levels] * self.fsq_dims if isinstance(self.levels, int) else self.levels


class TransformerConfig(TrainingSection):
    """`transformer`: the decoder-only token transformer (`train_transformer` stage)."""

    context: int = Field(512, ge=2, description="training window in tokens")
    window: int = Field(256, ge=1, description="causal sliding-window attention span (tokens)")
    layers: int = Field(4, ge=1)
    heads: int = Field(4, ge=1)
    width: int = Field(256, ge=8)
    mlp_ratio: float = Field(4.0, gt=0)
    head: Literal["joint", "factorized"] = Field(
        "factorized", description="one softmax over the codebook, or one per FSQ dimension"
    )
    attention: Literal["auto", "flash_attn", "flex", "sdpa"] = "auto"
    positions: Literal["alibi", "learned"] = Field(
        "alibi", description="learned absolute positions exist only as a baseline for benches"
    )
    dropout: float = Field(0.0, ge=0, lt=1)
    previous_frames: int = Field(
        0,
        ge=0,
        description="feed each prediction the tokens at its place in the n latent frames before",
    )
    anchor: bool = Field(
        False,
        description="feed each prediction the token at its place in the stream's first latent "
        "frame (the scene's, or the prompt's): a still background to return to",
    )
    frame_positions: bool = Field(
        False,
        description="add a learned vector for the place in its latent frame that each input "
        "predicts (row and column, or sound slot): the scene's first frame knows where it draws",
    )
    opening: bool = Field(
        False,
        description="publish, beside the model, the EMA weights of the evaluated step whose "
        "drawn first frames look most like the film (`stages/transformer/opening`): they draw "
        "an unconditional sample's first latent frame, the published model the rest (needs "
        "frame_positions and a realism probe)",
    )
    restarts: bool = Field(
        True, description="also train on every clip from the scene-start token (beginnings)"
    )
    row_above: bool = Field(
        False,
        description="feed each prediction the token above its place in the same latent frame "
        "(input embedding and digit-transition table): lines and edges continue down the frame",
    )
    input_noise: float = Field(
        0.0, ge=0, lt=1, description="share of input tokens replaced by random codes in training"
    )
    own_draws: float = Field(
        0.0,
        ge=0,
        le=1,
        description="share of input codes replaced by the model's own draws of them in training "
        "(one more forward pass a step, no gradient): it learns from its own mistakes",
    )
    sound: bool = Field(
        True,
        description="learn the sound's tokens in the same stream as the pictures' (where "
        "`tokenize` made some: the corpus has a soundtrack)",
    )
    eval_windows: int = Field(64, ge=1, description="val windows for bits/token")
    select: Literal[
        "realism_motion", "worst_kind_motion", "continuation_motion", "realism", "val_bits"
    ] = Field(
        "realism_motion",
        description="publish the evaluated step whose probe samples score best on realism "
        "while moving like the film (realism_motion), on the realism of the worse kind, "
        "unconditional or continued, while moving (worst_kind_motion), on the continuations' "
        "while moving (continuation_motion: with `opening`, every sample continues a frame "
        "it did not draw), on realism alone, or the one with the lowest val bits/token",
    )
    select_samples: int = Field(
        4, ge=1, description="realism probe: unconditional samples, and as many continuations"
    )
    select_frames: int = Field(49, ge=5, description="realism probe: frames per sample, 1 + 4k")
    select_temperature: float = Field(
        1.0, gt=0, description="realism probe: sampling temperature (as `sample.temperature`)"
    )

    @model_validator(mode="after")
    def _shapes_fit(self) -> TransformerConfig:
        if self.window > self.context:
            raise ValueError(
                f"transformer.window ({self.window}) must be ≤ transformer.context "
                f"({self.context}): a training window shorter than the attention span never "
                "trains the span's far end"
            )
        if self.width % self.heads:
            raise ValueError(
                f"transformer.heads ({self.heads}) must divide transformer.width ({self.width})"
            )
        if (self.width // self.heads) % 2:
            raise ValueError(f"transformer.width / heads = {self.width // self.heads} must be even")
        if self.opening and not self.frame_positions:
            raise ValueError(
                "transformer.opening needs transformer.frame_positions: true (without a place "
                "in the frame no step draws a first frame from nothing)"
            )
        if self.opening and self.select == "val_bits":
            raise ValueError(
                "transformer.opening picks its step by the realism probe's first frames: set "
                "transformer.select to realism_motion, continuation_motion or another probe "
                "criterion, not val_bits"
            )
        if (self.select_frames - 1) % 4:
            raise ValueError(
                f"transformer.select_frames must be 1 + 4k (5, 9, …, 49), got {self.select_frames}"
            )
        return self


class AudioConfig(TrainingSection):
    """`audio`: the audio tokenizer, trained on the clips' soundtrack (`train_audio_tokenizer`)."""

    channels: int = Field(8, ge=4, description="width at the full sample rate, ×2 per stride")
    strides: list[int] = Field(
        [2, 5, 5, 5], min_length=1, description="down-sampling per level; hop = their product"
    )
    dilations: list[int] = Field([1, 3], min_length=1, description="residual units per level")
    levels: list[int] = Field([8, 5, 5, 5], min_length=1, description="FSQ levels per codebook")
    codebooks: int = Field(1, ge=1, le=8, description="tokens per step")
    stft_weight: float = Field(1.0, ge=0, description="multi-resolution STFT loss")
    mel_weight: float = Field(1.0, ge=0, description="log-mel L1 loss")
    wave_weight: float = Field(0.0, ge=0, description="waveform L1 loss (phase; SI-SNR)")
    speed: float = Field(
        0.0, ge=0, le=1, description="replay training clips at random speeds within ±this"
    )
    gain_db: float = Field(0.0, ge=0, le=24, description="random gain of training clips (dB)")
    disc_start: int = Field(
        10**9,
        ge=0,
        description="step at which the STFT discriminator (GAN) starts; ≥ max_steps: off",
    )
    adv_weight: float = Field(1.0, ge=0, description="generator's adversarial loss")
    feature_weight: float = Field(2.0, ge=0, description="feature matching loss")
    disc_channels: int = Field(16, ge=4)
    disc_lr: float | None = Field(None, gt=0, description="default: lr")
    eval_clips: int = Field(64, ge=1, description="val clips for the reconstruction measures")

    @field_validator("strides", "dilations", "levels")
    @classmethod
    def _positive(cls, values: list[int]) -> list[int]:
        if min(values) < 1:
            raise ValueError(f"must be integers ≥ 1, got {values}")
        return values

    @field_validator("levels")
    @classmethod
    def _levels_at_least_2(cls, levels: list[int]) -> list[int]:
        if min(levels) < 2:
            raise ValueError(f"FSQ levels must be integers ≥ 2 (e.g. [8, 5, 5, 5]), got {levels}")
        return levels

    @property
    def hop(self) -> int:
        return math.prod(self.strides)


class SuperresConfig(TrainingSection):
    """`superres`: video super-resolution to the stored clip size (`train_superres` stage)."""

    scale: int = Field(2, ge=2, le=8, description="upscaling factor (stored size / input size)")
    frames: int = Field(3, ge=1, description="neighbouring input frames per output frame (odd)")
    channels: int = Field(32, ge=8)
    blocks: int = Field(4, ge=1, description="residual blocks")
    area_consistent: bool = Field(
        False,
        description="correct the bicubic base so that each output block averages to its input "
        "pixel (the output area-downsamples to the input exactly)",
    )
    crop: int = Field(64, ge=8, description="high-resolution training crop (pixels)")
    adv_weight: float = Field(0.0, ge=0, description="optional GAN loss weight (0: L1 only)")
    dihedral: bool = Field(
        False, description="turn (90°) and mirror training crops at random: 8 views of each"
    )
    zoom: float = Field(
        1.0,
        ge=1,
        le=4,
        description="train on crops from regions up to this many times wider, area-downsampled "
        "(1: off): wider shots than the clips' own",
    )
    eval_clips: int = Field(32, ge=1, description="val clips for PSNR/SSIM")

    @field_validator("frames")
    @classmethod
    def _odd(cls, frames: int) -> int:
        if frames % 2 == 0:
            raise ValueError("must be odd: the output frame sits at the centre of its inputs")
        return frames


class SampleConfig(Section):
    """`sample`: new clips from the transformer, decoded and upscaled (`sample` stage)."""

    num_clips: int = Field(4, ge=1, description="samples to generate")
    frames: int = Field(49, description="frames per sample, 1 + 4k")
    prompt_frames: int = Field(0, ge=0, description="0: unconditional; else 1 + 4k real frames")
    temperature: float = Field(1.0, gt=0)
    top_k: int = Field(0, ge=0, description="0: off")
    top_p: float = Field(1.0, gt=0, le=1)
    opening_temperature: float | None = Field(
        None, gt=0, description="the stream's first latent frame (the anchor); null: temperature"
    )
    opening_top_p: float | None = Field(
        None, gt=0, le=1, description="the stream's first latent frame; null: top_p"
    )
    opening_candidates: int = Field(
        1,
        ge=1,
        le=64,
        description="first latent frames drawn per unconditional sample; kept: the one the "
        "transformer finds most likely (the fewest nats per code)",
    )
    seed: int = Field(0, ge=0)
    fps: float = Field(24.0, gt=0)
    upscale: bool = Field(True, description="run the super-resolution model on the samples")
    audio: bool = Field(
        True, description="give the MP4s the sound the transformer generates (where it learnt some)"
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"

    @field_validator("num_clips", mode="before")
    @classmethod
    def _at_least_one(cls, n: Any) -> Any:
        if n == 0:
            raise ValueError("must be ≥ 1: there is nothing to sample with num_clips 0")
        return n

    @field_validator("frames", "prompt_frames")
    @classmethod
    def _one_plus_4k(cls, frames: int) -> int:
        if frames and (frames - 1) % 4:
            raise ValueError(
                f"must be 1 + 4k (5, 9, 17, 49, …): the tokenizer turns the first frame and "
                f"then every 4 frames into one latent frame; got {frames}"
            )
        return frames

    @model_validator(mode="after")
    def _prompt_shorter_than_sample(self) -> SampleConfig:
        if self.frames < 1:
            raise ValueError("sample.frames must be ≥ 1")
        if self.prompt_frames >= self.frames:
            raise ValueError(
                f"sample.prompt_frames ({self.prompt_frames}) must be < sample.frames "
                f"({self.frames}): the prompt is part of the sample, so nothing would be new"
            )
        return self


class EvaluateConfig(Section):
    """`evaluate`: quality metrics of every model and of the samples (`evaluate` stage)."""

    i3d_weights: str | None = Field(
        None, description="an I3D weights file you supply, for FVD; none is downloaded"
    )
    max_clips: int = Field(256, ge=2, description="clips per set for the distribution metrics")
    realism_every: int = Field(
        2, ge=1, description="score every n-th generated frame's realism (1: all)"
    )
    batch_size: int = Field(8, ge=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"


SECTIONS: dict[str, type[Section]] = {
    "data": DataConfig,
    "preprocess": PreprocessConfig,
    "tokenizer": TokenizerConfig,
    "transformer": TransformerConfig,
    "superres": SuperresConfig,
    "audio": AudioConfig,
    "sample": SampleConfig,
    "evaluate": EvaluateConfig,
}

S = TypeVar("S", bound=Section)


def _describe(error: dict[str, Any], section: str, model: type[Section]) -> str:
    key = ".".join([section, *(str(part) for part in error["loc"])])
    if error["type"] == "extra_forbidden":
        allowed = ", ".join(sorted(model.model_fields))
        return f"{key}: unknown key. Allowed keys of `{section}`: {allowed}"
    message = error["msg"].removeprefix("Value error, ")
    if error["loc"]:
        return f"{key} = {error['input']!r}: {message}"
    return f"{section}: {message}"


def parse_section(section: str, values: dict[str, Any] | None, model: type[S]) -> S:
    """Validate one section's raw values into its typed config, or raise a WillieError."""
    values = values or {}
    if not isinstance(values, dict):
        raise WillieError(f"{PARAMS_FILE}: `{section}` must be a mapping of keys, got {values!r}")
    try:
        return model.model_validate(values)
    except ValidationError as e:
        lines = [_describe(err, section, model) for err in e.errors()]
        raise WillieError(f"invalid {PARAMS_FILE}:\n  " + "\n  ".join(lines)) from None


def load_params(path: str | os.PathLike[str] = PARAMS_FILE) -> dict[str, Any]:
    params_path = Path(path)
    if not params_path.is_file():
        raise WillieError(
            f"{params_path} not found: run willie from the project root (where dvc.yaml is)"
        )
    try:
        params = yaml.safe_load(params_path.read_text()) or {}
    except yaml.YAMLError as e:
        raise WillieError(f"{params_path} is not valid YAML: {e}") from None
    if not isinstance(params, dict):
        raise WillieError(f"{params_path} must be a mapping of sections")
    return params


def _cross_section_problems(cfg: dict[str, Any]) -> list[str]:
    """Rules that tie sections together, which no single section can check."""
    problems = []
    pre, tok, sr, smp = cfg["preprocess"], cfg["tokenizer"], cfg["superres"], cfg["sample"]
    if tok.size > min(pre.size):
        problems.append(
            f"tokenizer.size ({tok.size}) must be ≤ preprocess.size {list(pre.size)}: the "
            "tokenizer area-downsamples the stored clips, it does not upscale them"
        )
    if smp.upscale and pre.size != (tok.size * sr.scale, tok.size * sr.scale):
        problems.append(
            f"superres.scale ({sr.scale}) × tokenizer.size ({tok.size}) must equal "
            f"preprocess.size {list(pre.size)}: the super-resolution model upscales the "
            "tokenizer's frames to the stored size. Set superres.scale = preprocess.size / "
            "tokenizer.size, or sample.upscale: false"
        )
    audio = cfg["audio"]
    if pre.audio_per_frame % audio.hop:
        problems.append(
            f"audio.strides {audio.strides} give a hop of {audio.hop} samples, which must divide "
            f"the {pre.audio_per_frame} samples of one frame (preprocess.audio_rate / fps): "
            "every frame owns whole audio tokens. E.g. strides [2, 5, 5, 5] (hop 250) at 12 kHz"
        )
    if smp.prompt_frames > pre.clip_frames:
        problems.append(
            f"sample.prompt_frames ({smp.prompt_frames}) must be ≤ preprocess.clip_frames "
            f"({pre.clip_frames}): prompts are the first frames of a val clip"
        )
    return problems


def validate_params(params: dict[str, Any]) -> dict[str, Section]:
    """Every section of `params.yaml` and the rules between them, all at once: a typo in a
    late stage's section fails the first stage, before any work, with every problem named."""
    problems = [
        f"{name}: unknown section. Sections: {', '.join(SECTIONS)}"
        for name in params
        if name not in SECTIONS
    ]
    configs: dict[str, Section] = {}
    for name, model in SECTIONS.items():
        try:
            configs[name] = parse_section(name, params.get(name), model)
        except WillieError as e:
            problems += str(e).removeprefix(f"invalid {PARAMS_FILE}:").strip().splitlines()
    if not problems:
        problems = _cross_section_problems(configs)
    if problems:
        raise WillieError(
            f"invalid {PARAMS_FILE}:\n  " + "\n  ".join(line.strip() for line in problems)
        )
    return configs


def load_section(section: str, path: str | os.PathLike[str] = PARAMS_FILE) -> Section:
    """Read and validate `params.yaml` (every section: see `validate_params`); return one."""
    return validate_params(load_params(path))[section]
