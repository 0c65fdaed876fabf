"""Compression methods: the registry and the built-in methods (n2n, embedding, random, uniform, prune).

Importing this package registers the built-in methods.
"""

from archcompress.methods import baselines, embedding, n2n, prune
from archcompress.methods.base import ChosenStudent, Method, MethodContext, build_chosen
from archcompress.methods.registry import get_method, method_names, methods_with_options, register_method

__all__ = [
    "ChosenStudent",
    "Method",
    "MethodContext",
    "baselines",
    "build_chosen",
    "embedding",
    "get_method",
    "method_names",
    "methods_with_options",
    "n2n",
    "prune",
    "register_method",
]
