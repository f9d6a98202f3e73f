"""Video super-resolution: the model and its training stage.

from willie.superres import load_superres
model = load_superres("stages/superres")
video = model.upscale(low_res)  # [B, 1, T, h, w] in [-1, 1] → [B, 1, T, h·s, w·s]
"""

from willie.superres.model import SuperResArch, VideoSuperRes, load_superres

__all__ = ["SuperResArch", "VideoSuperRes", "load_superres"]
