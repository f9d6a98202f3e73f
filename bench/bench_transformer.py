"""Token transformer benchmarks: KV-cache speed and memory, training throughput, extrapolation.

    python bench/bench_transformer.py [--part cache|memory|train|generate|extrapolation|all]
                                      [--tokens data/tokens] [--device cuda] [--tiny]

- cache: per-token time of KV-cached decoding at a 2,048-token context vs recomputing the
  full forward every step (the baseline), same model, same run.
- memory: peak memory added by generating 4× the training context vs 1× (each in a fresh
  process: peak RSS minus the RSS after loading the model).
- train: training tokens/s per attention backend available here (and MFU on a known card).
- generate: KV-cached sampling tokens/s at batch 1 and 8 on `--device` (bf16 on CUDA).
- extrapolation: on real tokens (`--tokens`, from `dvc repro tokenize`), val bits/token at 1×
  and 2× the training context, ALiBi vs learned absolute positions, same training budget.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch
from _common import REPO, machine

from willie.transformer.attention import available_backends
from willie.transformer.generate import generate, generate_uncached
from willie.transformer.model import TokenTransformer, TransformerArch

LEVELS = (8, 5, 5, 5)


def bench_model(context: int = 2048, window: int = 512, **overrides: object) -> TokenTransformer:
    torch.manual_seed(0)
    values = {"layers": 4, "heads": 4, "width": 256, "window": window, "context": context}
    return TokenTransformer(TransformerArch(levels=LEVELS, **{**values, **overrides})).eval()


def part_cache() -> None:
    model = bench_model()
    context = model.arch.context
    prompt = torch.randint(0, 1000, (1, context - 1))
    prompt[0, 0] = model.arch.bos
    steps = 32
    start = time.perf_counter()
    generate(model, prompt, steps)
    cached = time.perf_counter() - start
    with torch.inference_mode():  # the prefill alone, to subtract it
        start = time.perf_counter()
        model.hidden(prompt, 0, model.new_caches())
        prefill = time.perf_counter() - start
    per_token_cached = (cached - prefill) / (steps - 1)
    start = time.perf_counter()
    generate_uncached(model, prompt, 3)
    per_token_full = (time.perf_counter() - start) / 3
    print(f"KV cache at a {context}-token context (window {model.arch.window}, sdpa, CPU fp32):")
    print(f"  recompute the full forward per token  {per_token_full * 1e3:8.1f} ms/token   1×")
    print(
        f"  rolling KV cache                      {per_token_cached * 1e3:8.1f} ms/token   "
        f"{per_token_full / per_token_cached:.0f}× faster"
    )


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def measure_generation(multiple: int) -> dict[str, float]:
    model = bench_model()
    prompt = torch.full((1, 1), model.arch.bos)
    before = rss_mb()
    start = time.perf_counter()
    generate(model, prompt, multiple * model.arch.context - 1)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    tokens = multiple * model.arch.context
    return {"added_mb": peak - before, "peak_mb": peak, "ms_per_token": seconds * 1e3 / tokens}


def part_memory() -> None:
    results = {}
    for multiple in (1, 4):
        out = subprocess.run(
            [sys.executable, __file__, "--part", f"_generate{multiple}"],
            check=True,
            capture_output=True,
            text=True,
            cwd=Path(__file__).parent,
        ).stdout
        results[multiple] = json.loads(out.splitlines()[-1])
    one, four = results[1], results[4]
    print("Generation memory (fresh process each; peak RSS − RSS after loading the model):")
    for m, r in results.items():
        print(
            f"  {m}× context ({m * 2048:5d} tokens)  +{r['added_mb']:7.1f} MiB  "
            f"(peak {r['peak_mb']:.0f} MiB)  {r['ms_per_token']:.1f} ms/token"
        )
    print(
        f"  4× / 1× added memory: {four['added_mb'] / one['added_mb']:.2f}  "
        f"(per-token time ratio {four['ms_per_token'] / one['ms_per_token']:.2f})"
    )


# Dense bf16 peak FLOP/s by card, for MFU (None: not known here, MFU not printed).
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12, "L4": 121e12}


def peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for card, peak in PEAK_BF16.items() if card in name), None)


# The models timed per backend: the bench's own (4 layers, width 256) and, on CUDA, the GPU
# recipe's (README "Scale": 12 layers, 12 heads, width 768, context 2,560, window 1,024).
TRAIN_SIZES = {
    "bench": {"layers": 4, "heads": 4, "width": 256},
    "recipe": {"layers": 12, "heads": 12, "width": 768},
}


def time_training(
    model: TokenTransformer, ids: torch.Tensor, device: torch.device, repeats: int
) -> float:
    """Seconds per AdamW training step of `model` on `ids` [B, L] (bf16 autocast on CUDA)."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step() -> None:
        with torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda"):
            loss = model(ids, ids)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(2):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats


def part_train(device: torch.device, tiny: bool) -> None:
    shapes = {"bench": (2048, 512, 8), "recipe": (2560, 1024, 8)}  # context, window, batch
    if device.type != "cuda":
        shapes = {"bench": (512, 256, 4)}
    if tiny:
        shapes = {"bench": (64, 32, 2)}
    for name, (context, window, batch) in shapes.items():
        sizes = {"layers": 1, "heads": 2, "width": 32} if tiny else TRAIN_SIZES[name]
        print(
            f"Training throughput, {name} model ({sizes['layers']} layers, width "
            f"{sizes['width']}), context {context}, window {window}, batch {batch}, on {device}:"
        )
        ids = torch.randint(0, 1000, (batch, context), device=device)
        for backend in available_backends(device):
            if backend == "flex" and device.type != "cuda":
                continue
            model = bench_model(context=context, window=window, **sizes).to(device).train()
            model.set_backend(backend)
            try:
                seconds = time_training(model, ids, device, 10 if device.type == "cuda" else 3)
            except Exception as e:  # one backend failing must not hide the others' figures
                print(f"  {backend:10s} FAILED: {type(e).__name__}: {str(e)[:200]}")
                continue
            tokens_per_s = batch * context / seconds
            arch = model.arch
            # 6·N per token for the weights, + 12·layers·width·window for attention scores
            flops = 6 * model.num_params() + 12 * arch.layers * arch.width * arch.window
            line = f"  {backend:10s} {tokens_per_s:10.0f} tokens/s"
            if peak := peak_flops(device):
                mfu = tokens_per_s * flops / peak
                line += f"   MFU {mfu:.1%} (of {peak / 1e12:.0f} TFLOP/s bf16)"
            print(line, flush=True)
            del model
            if device.type == "cuda":
                torch.cuda.empty_cache()


def part_generate(device: torch.device, tiny: bool) -> None:
    """KV-cached sampling tokens/s on `device`, batch 1 and 8, from BOS."""
    sizes = {"layers": 1, "heads": 2, "width": 32} if tiny else {}
    model = bench_model(context=512, window=256, **sizes).to(device)
    new = 64 if tiny else 1024
    print(f"KV-cached generation of {new} tokens from BOS on {device} (window 256):")
    for batch in (1, 8):
        prompt = torch.full((batch, 1), model.arch.bos, device=device)
        with torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda"):
            generate(model, prompt, 8)  # warm-up
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            generate(model, prompt, new)
            if device.type == "cuda":
                torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        print(f"  batch {batch}   {batch * new / seconds:10.0f} tokens/s")


def part_extrapolation(tokens: Path, steps: int) -> None:
    from willie.config import TransformerConfig
    from willie.transformer.data import TokenStreams
    from willie.transformer.measures import bits_per_token
    from willie.transformer.model import load_transformer
    from willie.transformer.train import train_transformer

    if not (tokens / "manifest.json").is_file():
        sys.exit(f"{tokens}: no tokens; run `dvc repro tokenize` first (or pass --tokens)")
    context, window = 320, 160
    print(
        f"Length extrapolation on {tokens}: {steps} steps each, context {context}, window "
        f"{window}; bits/token at 1× and 2× the context (train streams: the position effect "
        "alone; val: also generalization)"
    )
    streams = {split: TokenStreams(tokens, split) for split in ("train", "val")}
    for positions in ("alibi", "learned"):
        cfg = TransformerConfig(
            context=context, window=window, layers=4, heads=4, width=192, batch_size=8,
            max_steps=steps, lr=1e-3, warmup_steps=20, positions=positions, device="cpu",
            log_every=50, checkpoint_every=10**6, eval_every=0, dropout=0.1, weight_decay=0.1,
        )  # fmt: skip
        out = REPO / "bench" / ".runs" / f"transformer-{positions}"
        train_transformer(cfg, tokens, out, out / "plots")
        model = load_transformer(out)
        line = f"  {positions:8s}"
        for split, stream in streams.items():
            one, _ = bits_per_token(model, stream, context, max_windows=64, batch_size=8,
                                    device=torch.device("cpu"))  # fmt: skip
            two, _ = bits_per_token(model, stream, 2 * context, max_windows=64, batch_size=8,
                                    device=torch.device("cpu"))  # fmt: skip
            line += f"   {split}: 1× {one:6.3f}  2× {two:6.3f}  ratio {two / one:5.3f}"
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--part", default="all")
    parser.add_argument("--tokens", type=Path, default=REPO / "data" / "tokens")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--tiny", action="store_true", help="tiny shapes: a dry run")
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.part.startswith("_generate"):
        print(json.dumps(measure_generation(int(args.part.removeprefix("_generate")))))
        return
    print(f"machine: {machine()}")
    parts = ["cache", "memory", "train", "extrapolation"] if args.part == "all" else [args.part]
    for part in parts:
        if part == "cache":
            part_cache()
        elif part == "memory":
            part_memory()
        elif part == "train":
            part_train(device, args.tiny)
        elif part == "generate":
            part_generate(device, args.tiny)
        elif part == "extrapolation":
            part_extrapolation(args.tokens, args.steps)
        else:
            sys.exit(f"unknown part {part}")


if __name__ == "__main__":
    main()
