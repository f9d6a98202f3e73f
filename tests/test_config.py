from pathlib import Path

import pytest

from willie.config import DataConfig, PreprocessConfig, TokenizerConfig, load_section, parse_section
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
