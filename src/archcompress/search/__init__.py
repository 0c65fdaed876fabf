"""Search methods: the propose/observe protocol, the N2N reward, and the searches themselves."""

from archcompress.search.base import Search
from archcompress.search.baselines import RandomSearch
from archcompress.search.reward import INVALID_REWARD, choose_best, compression, n2n_reward, result_reward

__all__ = [
    "INVALID_REWARD",
    "RandomSearch",
    "Search",
    "choose_best",
    "compression",
    "n2n_reward",
    "result_reward",
]
