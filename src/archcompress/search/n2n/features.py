"""The unit features the N2N policies read: the space's own (absolute) or scaled to the teacher (relative).

Absolute features describe a layer on fixed scales (``log2(channels) / 12``, its share of the teacher's
parameters). A deeper teacher spreads its parameters over more layers, so the same kind of layer gets a smaller
share there, and a policy moved to it from a shallower teacher (transfer) sees inputs it never met. Relative
features divide each size column by its largest value over the teacher's units, so a layer of a deeper or wider
teacher looks like its counterpart in the smaller one.
"""

from __future__ import annotations

import numpy as np

from archcompress.space import FEATURE_SCHEMA, CompressionSpace

FEATURE_KINDS: tuple[str, ...] = ("absolute", "relative")
# size columns that grow with the teacher's width or shrink with its depth
RELATIVE_COLUMNS = ("in_width", "out_width", "param_share", "mac_share", "log_params")


def policy_features(space: CompressionSpace, kind: str = "absolute") -> np.ndarray:
    """``(units, len(FEATURE_SCHEMA))`` float32 features of ``space``'s units, of the given kind."""
    features = space.features().astype(np.float32, copy=True)
    if kind == "absolute":
        return features
    if kind != "relative":
        raise ValueError(f"unit features must be one of {', '.join(FEATURE_KINDS)}, got {kind!r}")
    for name in RELATIVE_COLUMNS:
        column = FEATURE_SCHEMA.names.index(name)
        largest = float(features[:, column].max()) if len(features) else 0.0
        if largest > 0.0:
            features[:, column] /= largest
    return features
