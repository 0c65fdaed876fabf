"""Architecture-embedding search (Ashok et al. 2019, "Architecture compression"; our design, close to NAO):
a codec model embeds candidates, predicts their accuracy and size, and gradient ascent in the embedding finds
new candidates."""

from archcompress.search.embedding.codec import FeatureNorm, TokenCodec
from archcompress.search.embedding.model import CodecData, CodecModel, codec_loss, fit, token_accuracy
from archcompress.search.embedding.search import EmbeddingOptions, EmbeddingSearch, load_codec

__all__ = [
    "CodecData",
    "CodecModel",
    "EmbeddingOptions",
    "EmbeddingSearch",
    "FeatureNorm",
    "TokenCodec",
    "codec_loss",
    "fit",
    "load_codec",
    "token_accuracy",
]
