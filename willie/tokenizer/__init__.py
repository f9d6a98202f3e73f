"""The MAGVIT-v2-style causal video tokenizer with FSQ: model, training and tokenize stages.

from willie.tokenizer import load_tokenizer
tokenizer = load_tokenizer("stages/tokenizer")
indices = tokenizer.encode(video)  # [B, 1, T, H, W] in [-1, 1] → [B, t, h, w]
video = tokenizer.decode(indices)
"""

from willie.tokenizer.fsq import FSQ
from willie.tokenizer.model import TokenizerArch, VideoTokenizer, load_tokenizer

__all__ = ["FSQ", "TokenizerArch", "VideoTokenizer", "load_tokenizer"]
