"""MAGVIT-v2-style causal video tokenizer: causal 3D CNN encoder/decoder, FSQ, GAN losses."""
