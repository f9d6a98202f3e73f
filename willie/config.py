"""Typed, validated configuration: one pydantic model per `params.yaml` section.

Each stage reads only its own section. Validation happens once, before any work, and a bad
value fails with a message that names the key, the value and what is allowed. Library code
receives these typed objects, never raw dicts.
"""

from __future__ import annotations

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


class Section(BaseModel):
    """A `params.yaml` section: unknown keys and silent type coercions are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class DataConfig(Section):
    """`data`: where the film comes from (the `download` stage)."""

    source: Literal["archive.org", "file", "synthetic"] = "archive.org"
    path: str | None = Field(None, description="the local video for source=file")
    seed: int = Field(0, ge=0, description="seed of the synthetic cartoon")
    # archive.org
    item: str = Field("steamboat-willie-mickey", min_length=1)
    file_name: str | None = Field(None, description="pick this file of the item, not the best")
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

    @model_validator(mode="after")
    def _path_for_file_source(self) -> DataConfig:
        if self.source == "file" and not self.path:
            raise ValueError(
                "data.source=file needs data.path, the video to use "
                "(e.g. dvc exp run -S data.source=file -S data.path=/videos/film.mp4)"
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

    @field_validator("clip_frames")
    @classmethod
    def _one_plus_4k(cls, frames: int) -> int:
        if frames < 5 or (frames - 1) % 4:
            raise ValueError(
                f"must be 1 + 4k with k ≥ 1 (5, 9, 13, 17, 33, …): the tokenizer encodes the "
                f"first frame alone and then 4 frames per latent frame; got {frames}"
            )
        return frames

    @property
    def frame_size(self) -> tuple[int, int]:
        """(height, width) of the stored frames."""
        return self.size


SECTIONS: dict[str, type[Section]] = {"data": DataConfig, "preprocess": PreprocessConfig}

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


def load_section(section: str, path: str | os.PathLike[str] = PARAMS_FILE) -> Section:
    """Read and validate one section of `params.yaml`."""
    return parse_section(section, load_params(path).get(section), SECTIONS[section])
