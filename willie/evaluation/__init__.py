"""Metrics of the `evaluate` stage: Fréchet distance, novelty and temporal consistency of
generated clips, and FVD when the user supplies I3D weights."""

from willie.evaluation.distribution import (
    Novelty,
    frame_change_curve,
    frechet_distance,
    novelty,
    temporal_consistency,
    temporal_consistency_ratio,
    tokenizer_features,
)
from willie.evaluation.i3d import I3D, fvd, i3d_features, load_i3d

__all__ = [
    "I3D",
    "Novelty",
    "frame_change_curve",
    "frechet_distance",
    "fvd",
    "i3d_features",
    "load_i3d",
    "novelty",
    "temporal_consistency",
    "temporal_consistency_ratio",
    "tokenizer_features",
]
