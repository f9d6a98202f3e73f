"""The `sample` and `evaluate` stages on tiny (untrained) models and a tiny clip set."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from tests.test_superres import write_clips
from willie.config import EvaluateConfig, SampleConfig, TokenizerConfig, parse_section
from willie.errors import WillieError
from willie.evaluation.report import run_evaluate
from willie.generation.gallery import prompt_border_width
from willie.generation.sample import run_sample
from willie.superres.model import SuperResArch, VideoSuperRes
from willie.tokenizer.model import TokenizerArch, VideoTokenizer
from willie.tokenizer.tokenize import run_tokenize
from willie.training.checkpoint import save_artifact
from willie.transformer.model import TokenTransformer, TransformerArch

LEVELS = (4, 3, 3)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """data/clips (9 frames, 32×32), the three models as their stages publish them, tokens."""
    root = tmp_path_factory.mktemp("project")
    write_clips(root / "data/clips", (9, 32, 32), {"train": 8, "val": 4})
    arch = TokenizerArch(channels=8, levels=LEVELS)
    config = {"arch": arch.to_dict(), "size": 16, "clip_frames": 9, "codebook_size": 36}
    save_artifact(root / "stages/tokenizer", VideoTokenizer(arch), config, "# tokenizer")
    tiny = TransformerArch(levels=LEVELS, layers=1, heads=2, width=16, window=8, context=16)
    config = {"arch": tiny.to_dict(), "latent_shape": [3, 2, 2], "clip_shape": [9, 16, 16]}
    save_artifact(root / "stages/transformer", TokenTransformer(tiny), config, "# transformer")
    sr = SuperResArch(scale=2, channels=8, blocks=1)
    config = {"arch": sr.to_dict(), "scale": 2, "input_size": [16, 16], "output_size": [32, 32]}
    save_artifact(root / "stages/superres", VideoSuperRes(sr), config, "# superres")
    run_tokenize(
        TokenizerConfig(batch_size=4, device="cpu"),
        root / "data/clips",
        root / "stages/tokenizer",
        root / "data/tokens",
    )
    return root


def sample_in(root: Path, out: Path, **values: object) -> dict:
    cfg = SampleConfig(**{"num_clips": 2, "frames": 17, "device": "cpu", **values})
    s = root / "stages"
    clips = root / "data/clips"
    return run_sample(cfg, s / "tokenizer", s / "transformer", s / "superres", clips, out)


@pytest.fixture(scope="module")
def gallery(project: Path) -> tuple[Path, dict]:
    out = project / "stages/samples"
    return out, sample_in(project, out, prompt_frames=5, top_k=5, top_p=0.9)


def test_sample_writes_decodable_upscaled_mp4s_with_continuations(gallery) -> None:
    out, metrics = gallery
    index = json.loads((out / "samples.json").read_text())
    names = [s["name"] for s in index["samples"]]
    assert names == ["uncond_000", "uncond_001", "cont_000", "cont_001"]
    for sample in index["samples"]:
        with av.open(str(out / sample["files"]["mp4"])) as container:
            stream = container.streams.video[0]
            frames = list(container.decode(stream))
            assert len(frames) == 17 and stream.average_rate == 24
            assert (frames[0].height, frames[0].width) == (32, 32)  # 16 → 32 by super-res
        assert (out / sample["files"]["gif"]).is_file()
    assert index["samples"][2]["prompt_frames"] == 5 and index["samples"][0]["prompt_frames"] == 0
    # one batch, one generator: every sample says its row in it
    assert [s["settings"]["seed"] for s in index["samples"]] == [0, 0, 0, 0]
    assert [s["settings"]["batch_row"] for s in index["samples"]] == [0, 1, 2, 3]
    for sample in index["samples"]:  # the tokens each sample decodes from: 5 × 2 × 2
        assert np.load(out / sample["files"]["tokens"]).shape == (20,)
    assert metrics["real_time_factor"] > 0
    assert (out / "contact_sheet.png").is_file() and (out / "index.html").is_file()
    assert metrics["samples"] == 4 and metrics["tokens_per_s"] > 0


def test_samples_are_reproducible_from_their_seed(project: Path, tmp_path: Path) -> None:
    a = sample_in(project, tmp_path / "a", num_clips=1)
    b = sample_in(project, tmp_path / "b", num_clips=1)
    assert a["samples"] == b["samples"] == 1
    assert (tmp_path / "a/uncond_000.gif").read_bytes() == (
        tmp_path / "b/uncond_000.gif"
    ).read_bytes()


def test_the_opening_settings_draw_the_first_latent_frame_and_are_recorded(
    project: Path, tmp_path: Path
) -> None:
    sample_in(project, tmp_path / "default", num_clips=1, temperature=1.0)
    sample_in(project, tmp_path / "same", num_clips=1, temperature=1.0, opening_temperature=1.0)
    sample_in(project, tmp_path / "cold", num_clips=1, temperature=1.0, opening_temperature=0.05)
    gif = "uncond_000.gif"
    # the opening's own sampler at the same settings draws exactly what the default draws
    assert (tmp_path / "default" / gif).read_bytes() == (tmp_path / "same" / gif).read_bytes()
    assert (tmp_path / "default" / gif).read_bytes() != (tmp_path / "cold" / gif).read_bytes()
    index = json.loads((tmp_path / "cold/samples.json").read_text())
    settings = index["samples"][0]["settings"]
    assert settings["opening_temperature"] == 0.05 and settings["opening_top_p"] == 1.0


def test_bad_sample_settings_are_clear_errors(project: Path, tmp_path: Path) -> None:
    with pytest.raises(WillieError, match="num_clips = 0: must be ≥ 1"):
        parse_section("sample", {"num_clips": 0}, SampleConfig)
    with pytest.raises(WillieError, match=r"prompt_frames \(17\) must be < sample.frames \(17\)"):
        parse_section("sample", {"frames": 17, "prompt_frames": 17}, SampleConfig)
    with pytest.raises(WillieError, match=r"exceeds the clip length \(9 frames\)"):
        sample_in(project, tmp_path / "s", frames=21, prompt_frames=13)
    with pytest.raises(WillieError, match="run `dvc repro train_transformer` first"):
        s = project / "stages"
        run_sample(SampleConfig(device="cpu"), s / "tokenizer", tmp_path / "none", s / "superres")
    assert not (tmp_path / "s").exists()


def test_a_transformer_of_another_vocabulary_is_refused(project: Path, tmp_path: Path) -> None:
    other = TransformerArch(levels=(8, 5), layers=1, heads=2, width=16, window=8, context=16)
    config = {"arch": other.to_dict(), "latent_shape": [3, 2, 2], "clip_shape": [9, 16, 16]}
    save_artifact(tmp_path / "transformer", TokenTransformer(other), config, "# other")
    s, cfg = project / "stages", SampleConfig(device="cpu")
    with pytest.raises(WillieError, match=r"FSQ levels \[8, 5\] but .* has \[4, 3, 3\]"):
        run_sample(cfg, s / "tokenizer", tmp_path / "transformer", s / "superres")


def evaluate_in(root: Path, cfg: EvaluateConfig) -> dict:
    s = root / "stages"
    return run_evaluate(
        cfg,
        tokenizer_dir=s / "tokenizer",
        transformer_dir=s / "transformer",
        superres_dir=s / "superres",
        clips_dir=root / "data/clips",
        tokens_dir=root / "data/tokens",
        samples_dir=s / "samples",
        plots_dir=root / "metrics/plots",
    )


def test_evaluate_scores_models_and_samples_and_writes_plots(project: Path, gallery) -> None:
    metrics = evaluate_in(project, EvaluateConfig(max_clips=8, device="cpu"))
    for key in ("recon_psnr", "val_bits_per_token", "sr_gain_db", "latent_frechet", "novelty"):
        assert isinstance(metrics[key], float), key
    assert "fvd" not in metrics  # no I3D weights given
    assert metrics["sr_gain_db"] == pytest.approx(0, abs=1e-6)  # untrained SR is bicubic
    assert metrics["sample_clips"] == 2 * 2 + 2 * 1  # 9-frame windows of 17 / 12 frames
    by_frame = (project / "metrics/plots/recon_psnr_by_frame.csv").read_text().splitlines()
    assert by_frame[0] == "frame,psnr" and len(by_frame) == 1 + 9
    change = (project / "metrics/plots/frame_change.csv").read_text().splitlines()
    assert change[0] == "frame,samples,real" and len(change) == 1 + 8
    # the motion the tokenizer's reconstructions of val keep, the scale a sample can reach
    real_change = np.mean([float(row.split(",")[2]) for row in change[1:]])
    assert metrics["frame_change_real"] == pytest.approx(real_change, rel=1e-4)
    assert metrics["frame_change_recon"] >= 0 and metrics["frame_change_ratio_recon"] >= 0
    # realism: best SSIM against real frames, for samples and for held-out real footage
    scores = ("realism_first", "realism_last", "realism_heldout_real", "realism_recon")
    for key in ("realism", "realism_flat", "realism_cont", "realism_uncond", *scores):
        assert -1 <= metrics[key] <= 1, key
    assert "realism_real_2s_apart" not in metrics  # 9-frame clips: no frames 2 s apart
    assert metrics["copy_windows"] == 6 and 0 <= metrics["copy_share"] <= 1
    assert metrics["baseline_val_bits_per_token"] > 0
    realism = (project / "metrics/plots/realism_by_second.csv").read_text().splitlines()
    assert realism[0] == "second,samples,heldout_real,recon,flat" and len(realism) == 1 + 1
    for name in ("recon_psnr_by_frame", "frame_change", "realism_by_second"):  # offline views
        with Image.open(project / f"metrics/plots/{name}.png") as png:
            assert png.format == "PNG" and png.size == (800, 450)


def test_missing_i3d_weights_file_is_a_clear_error(project: Path, tmp_path: Path) -> None:
    cfg = EvaluateConfig(i3d_weights=str(tmp_path / "rgb_imagenet.pt"), device="cpu")
    with pytest.raises(WillieError, match=r"rgb_imagenet\.pt: no such file"):
        evaluate_in(project, cfg)


def test_prompt_frames_in_the_videos_are_the_real_footage(gallery) -> None:
    # The gallery says dashed frames are real footage: they must be, not the tokenizer's
    # reconstruction of it.
    out, _ = gallery
    index = json.loads((out / "samples.json").read_text())
    cont = next(s for s in index["samples"] if s["prompt_frames"])
    with av.open(str(out / cont["files"]["prompt_gif"])) as container:
        real = np.stack([f.to_ndarray(format="gray") for f in container.decode(video=0)])
    with av.open(str(out / cont["files"]["mp4"])) as container:
        shown = np.stack([f.to_ndarray(format="gray") for f in container.decode(video=0)])
    b = prompt_border_width(*real.shape[1:])
    inner = (slice(None), slice(b, -b), slice(b, -b))
    error = np.abs(shown[:5].astype(float) - real.astype(float))[inner].mean()
    assert error < 6, f"prompt frames differ from the real footage by {error:.1f} gray levels"


def test_an_opening_model_draws_the_unconditional_first_latent_frame(
    project: Path, tmp_path: Path
) -> None:
    """With `stages/transformer/opening` (`transformer.opening`) an unconditional sample's
    first latent frame is drawn by it, first, from the run's generator, and the transformer
    continues it; the step it came from is recorded."""
    import shutil

    import torch

    from willie.transformer.generate import generate, sampler
    from willie.transformer.model import load_transformer

    stages = tmp_path / "stages"
    shutil.copytree(project / "stages", stages)
    main = load_transformer(stages / "transformer")
    torch.manual_seed(7)  # other weights than the transformer's: its draws differ
    opener = TokenTransformer(main.arch)
    config = json.loads((stages / "transformer/config.json").read_text()) | {"step": 300}
    save_artifact(stages / "transformer/opening", opener, config, "# opening")
    cfg = SampleConfig(num_clips=2, frames=17, device="cpu", temperature=1.0, seed=3)
    run_sample(cfg, *(stages / s for s in ("tokenizer", "transformer", "superres")),
               project / "data/clips", tmp_path / "out")  # fmt: skip

    bos = torch.full((2, 1), main.arch.bos)
    pick = sampler(temperature=1.0, generator=torch.Generator().manual_seed(3))
    expected = generate(opener.eval(), bos, 4, pick)[:, 1:]  # a latent frame: 2 × 2 tokens
    by_main = generate(main, bos, 4, sampler(generator=torch.Generator().manual_seed(3)))[:, 1:]
    assert not torch.equal(expected, by_main)
    index = json.loads((tmp_path / "out/samples.json").read_text())
    for row, sample in enumerate(index["samples"]):
        tokens = np.load(tmp_path / "out" / sample["files"]["tokens"])  # [5 latent frames · 4]
        assert tokens[:4].tolist() == expected[row].tolist()
        assert sample["settings"]["opening_step"] == 300
