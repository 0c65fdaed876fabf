"""Search methods: the propose/observe protocol, the N2N reward, the final choice, and the searches themselves."""

from archcompress.search.base import Search
from archcompress.search.baselines import RandomSearch
from archcompress.search.choice import Choice, choose_student, meets
from archcompress.search.reward import (
    INVALID_REWARD,
    TeacherStats,
    compression,
    n2n_reward,
    result_reward,
    reward_of,
)

__all__ = [
    "INVALID_REWARD",
    "Choice",
    "RandomSearch",
    "Search",
    "TeacherStats",
    "choose_student",
    "compression",
    "meets",
    "n2n_reward",
    "result_reward",
    "reward_of",
]
