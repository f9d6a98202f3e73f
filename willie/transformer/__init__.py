"""The token transformer: ALiBi, causal sliding-window attention, factorized FSQ heads."""

from willie.transformer.model import TokenTransformer, TransformerArch, load_transformer

__all__ = ["TokenTransformer", "TransformerArch", "load_transformer"]
