from pathlib import Path

import pytest

from willie.config import (
    DataConfig,
    PreprocessConfig,
    TokenizerConfig,
    TransformerConfig,
    load_section,
    parse_section,
)
from willie.errors import WillieError


def write_params(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return path


def test_repository_params_are_valid() -> None:
    repo_params = Path(__file__).resolve().parents[1] / "params.yaml"
    assert isinstance(load_section("data", repo_params), DataConfig)
    assert isinstance(load_section("preprocess", repo_params), PreprocessConfig)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"clip_frames": 16}, ["preprocess.clip_frames = 16", "1 + 4k"]),
        ({"size": 100}, ["preprocess.size = 100", "multiple of 8"]),
        ({"size": [64, 60]}, ["preprocess.size", "multiple of 8"]),
        ({"stride": 0}, ["preprocess.stride = 0", "greater than or equal to 1"]),
        ({"val_fraction": 1.5}, ["preprocess.val_fraction = 1.5", "less than 1"]),
        ({"sizee": 64}, ["preprocess.sizee: unknown key", "Allowed keys", "size"]),
        ({"size": "big"}, ["preprocess.size = 'big'"]),
        ({"audio_rate": 16000}, ["666.67 samples per frame", "12000, 24000, 48000"]),
    ],
)
def test_bad_preprocess_value_names_key_value_and_rule(values: dict, expected: list[str]) -> None:
    with pytest.raises(WillieError) as error:
        parse_section("preprocess", values, PreprocessConfig)
    for fragment in expected:
        assert fragment in str(error.value)


def test_every_error_is_reported_at_once() -> None:
    with pytest.raises(WillieError) as error:
        parse_section("preprocess", {"clip_frames": 16, "size": 100}, PreprocessConfig)
    assert "clip_frames" in str(error.value) and "size" in str(error.value)


def test_file_source_requires_a_path() -> None:
    with pytest.raises(WillieError, match=r"data\.path"):
        parse_section("data", {"source": "file"}, DataConfig)


def test_unknown_source_lists_the_choices() -> None:
    with pytest.raises(WillieError, match=r"'archive\.org', 'file' or 'synthetic'"):
        parse_section("data", {"source": "youtube"}, DataConfig)


def test_size_accepts_int_or_height_width() -> None:
    assert parse_section("preprocess", {"size": 64}, PreprocessConfig).frame_size == (64, 64)
    square = parse_section("preprocess", {"size": [64, 96]}, PreprocessConfig)
    assert square.frame_size == (64, 96)


def test_missing_or_broken_params_file(tmp_path: Path) -> None:
    with pytest.raises(WillieError, match="not found"):
        load_section("data", tmp_path / "nope.yaml")
    with pytest.raises(WillieError, match="not valid YAML"):
        load_section("data", write_params(tmp_path, "data: [unclosed"))


def test_absent_section_takes_defaults(tmp_path: Path) -> None:
    cfg = load_section("preprocess", write_params(tmp_path, "data:\n  seed: 3\n"))
    assert cfg == PreprocessConfig()


def test_training_identity_ignores_how_a_run_is_observed():
    base = TokenizerConfig()
    observed = TokenizerConfig(log_every=1, checkpoint_every=7, eval_every=3, eval_clips=2)
    assert observed.identity() == base.identity()
    assert TokenizerConfig(lr=1e-3).identity() != base.identity()


def test_a_later_stages_typo_fails_the_first_stage(tmp_path: Path) -> None:
    # `download` reads `data`, but a typo in `sample` (a stage hours later) must stop it now.
    params = write_params(tmp_path, "data:\n  source: synthetic\nsample:\n  temprature: 0.5\n")
    with pytest.raises(WillieError) as error:
        load_section("data", params)
    assert "sample.temprature: unknown key" in str(error.value)


def test_every_section_and_unknown_sections_reported_together(tmp_path: Path) -> None:
    text = "transfomer:\n  layers: 2\nevaluate:\n  max_clips: 1\ntokenizer:\n  lr: -1\n"
    with pytest.raises(WillieError) as error:
        load_section("preprocess", write_params(tmp_path, text))
    message = str(error.value)
    assert "transfomer: unknown section" in message and "transformer" in message
    assert "evaluate.max_clips = 1" in message and "tokenizer.lr = -1" in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("preprocess: {size: 128}\nsuperres: {scale: 4}\n", "superres.scale (4)"),
        ("preprocess: {size: 64}\ntokenizer: {size: 128}\n", "tokenizer.size (128) must be ≤"),
        ("preprocess: {clip_frames: 9}\nsample: {prompt_frames: 17}\n", "sample.prompt_frames"),
    ],
)
def test_rules_between_sections_are_checked_up_front(
    tmp_path: Path, text: str, expected: str
) -> None:
    with pytest.raises(WillieError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        load_section("data", write_params(tmp_path, text))


def test_a_size_mismatch_is_fine_when_nothing_is_upscaled(tmp_path: Path) -> None:
    text = "preprocess: {size: 128}\nsuperres: {scale: 4}\nsample: {upscale: false}\n"
    assert load_section("superres", write_params(tmp_path, text)).scale == 4


def test_tokenizer_spatial_downsample_reaches_the_architecture() -> None:
    from willie.tokenizer.model import VideoTokenizer
    from willie.tokenizer.train import architecture

    cfg = TokenizerConfig(size=32, spatial_downsample=4)
    assert VideoTokenizer(architecture(cfg)).latent_shape(17, 32, 32) == (5, 8, 8)
    assert VideoTokenizer(architecture(TokenizerConfig(size=32))).latent_shape(17, 32, 32) == (
        5,
        4,
        4,
    )
    with pytest.raises(ValueError, match="spatial_downsample"):
        TokenizerConfig(spatial_downsample=2)


def test_an_opening_model_needs_frame_positions_and_the_realism_probe() -> None:
    with pytest.raises(WillieError, match=r"opening needs transformer\.frame_positions"):
        parse_section("transformer", {"opening": True}, TransformerConfig)
    with pytest.raises(WillieError, match="not val_bits"):
        parse_section(
            "transformer",
            {"opening": True, "frame_positions": True, "select": "val_bits"},
            TransformerConfig,
        )
    cfg = {"opening": True, "frame_positions": True, "select": "continuation_motion"}
    assert parse_section("transformer", cfg, TransformerConfig).opening
