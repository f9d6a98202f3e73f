"""The stages' plots: a CSV that `dvc plots` reads, and the same figure as a PNG beside it.

`dvc plots show` writes an HTML page whose chart library loads from a CDN, so offline it is
blank; the PNGs (matplotlib, no network) open anywhere, show in MLflow's artifact view and in
the README. Both are written atomically.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from willie.atomic import atomic_path, write_bytes

Series = dict[str, tuple[Sequence[float], Sequence[float]]]  # label → (x, y)


def write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> Path:
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(header)
    writer.writerows(rows)
    write_bytes(path, text.getvalue().encode())
    return path


def write_png(path: Path, title: str, xlabel: str, ylabel: str, series: Series) -> Path:
    """One line per series, as a 800×450 PNG."""
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 4.5), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    for label, (x, y) in series.items():
        axes.plot(x, y, label=label, marker="." if len(x) < 30 else None)
    axes.set(title=title, xlabel=xlabel, ylabel=ylabel)
    axes.title.set_fontsize(10)
    axes.grid(alpha=0.3)
    if len(series) > 1:
        axes.legend()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
    return path


def write_spectrograms(path: Path, title: str, sounds: dict[str, Any], rate: int) -> Path:
    """One spectrogram per sound (label → mono float array), stacked, as a PNG: what a
    reconstruction keeps and loses, seen rather than heard. An empty dict draws the title."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    rows = max(1, len(sounds))
    figure = Figure(figsize=(8, 1.6 + 1.8 * rows), dpi=100, layout="constrained")
    figure.suptitle(title, fontsize=10)
    axes = figure.subplots(rows, 1, squeeze=False)[:, 0]
    for ax, (label, sound) in zip(axes, sounds.items(), strict=False):
        with np.errstate(divide="ignore"):  # digital silence: −inf dB, drawn as the floor
            ax.specgram(sound, NFFT=256, Fs=rate, noverlap=192, cmap="magma", vmin=-120)
        ax.set(ylabel="Hz", title=label)
        ax.title.set_fontsize(9)
    axes[-1].set_xlabel("seconds")
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
    return path


def write_plot(
    directory: Path,
    name: str,
    title: str,
    header: Sequence[str],
    rows: Sequence[Sequence[Any]],
    ylabel: str = "",
) -> tuple[Path, Path]:
    """`<name>.csv` (x = the first column, one y per other column) and `<name>.png`."""
    columns = list(zip(*rows, strict=True)) if rows else [[] for _ in header]
    series = {label: (columns[0], columns[i]) for i, label in enumerate(header) if i}
    return (
        write_csv(directory / f"{name}.csv", header, rows),
        write_png(directory / f"{name}.png", title, header[0], ylabel or header[1], series),
    )
