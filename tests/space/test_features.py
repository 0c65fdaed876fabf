"""Unit features: fixed length, size-independent, as FEATURE_SCHEMA says."""

from __future__ import annotations

import math

import numpy as np

from archcompress.space import FEATURE_SCHEMA, Candidate


def test_every_teacher_gives_schema_length_finite_features(teacher_space, model_case) -> None:
    ref, shape, _ = model_case
    _, space = teacher_space(ref, shape)
    features = space.features()
    assert features.shape == (len(space.units), len(FEATURE_SCHEMA))
    assert np.isfinite(features).all()
    assert features.min() >= -1 and features.max() <= 1.5  # normalised, whatever the teacher's size
    kinds = features[:, : sum(1 for n in FEATURE_SCHEMA.names if n.startswith("type_"))]
    assert (kinds.sum(1) == 1).all()  # exactly one kind per unit


def test_schema_is_versioned_and_named() -> None:
    assert FEATURE_SCHEMA.version == 1
    assert len(set(FEATURE_SCHEMA.names)) == len(FEATURE_SCHEMA.names)
    assert {"type_conv", "is_block", "removable", "position", "in_width", "kernel", "stride"} <= set(
        FEATURE_SCHEMA.names
    )


def test_features_describe_the_unit(teacher_space) -> None:
    _, space = teacher_space("resnet20", (3, 32, 32))
    column = {name: i for i, name in enumerate(FEATURE_SCHEMA.names)}
    features = space.features()
    for unit, row in zip(space.units, features, strict=True):
        assert row[column["is_block"]] == (unit.kind == "block")
        assert row[column["removable"]] == unit.removable
        assert row[column["in_body"]] == (unit.branch == "body")
        assert math.isclose(row[column["in_width"]], math.log2(unit.in_shape[0]) / 12, rel_tol=1e-6)
    downsampling = next(u for u in space.units if u.name == "layers.1.0.conv1")
    assert features[downsampling.index, column["stride"]] == 0.25  # 32x32 -> 16x16: log2(2) / 4
    assert features[0, column["is_first"]] == 1.0 and features[-1, column["is_classifier"]] == 1.0
    assert features[0, column["position"]] == 0.0 and features[-1, column["position"]] == 1.0


def test_candidate_features_append_the_actions(teacher_space) -> None:
    _, space = teacher_space("resnet20", (3, 32, 32))
    block = next(u for u in space.units if u.kind == "block" and u.removable)
    keep = list(space.teacher_candidate().keep)
    keep[block.keep_index] = False
    ratios = [0.5] * len(space.shrink_groups)
    tokens = space.candidate_features(Candidate(keep, ratios))
    width = len(FEATURE_SCHEMA)
    assert tokens.shape == (len(space.units), width + len(FEATURE_SCHEMA.action_names))
    np.testing.assert_array_equal(tokens[:, :width], space.features())
    kept, ratio, kernel = tokens[:, width], tokens[:, width + 1], tokens[:, width + 2]
    for index in (block.index, *block.body):
        assert kept[index] == 0 and ratio[index] == 0 and kernel[index] == 0  # removed, with its body
    assert kept[0] == 1 and ratio[0] == 10 / 16 and kernel[0] == 1  # 0.5 of 16 is below min_channels
    assert kept[-1] == 1 and ratio[-1] == 1  # the classifier's width is fixed
    # invalid candidates get tokens too (the store records them)
    invalid = space.candidate_features(Candidate(keep, [0.0] * len(ratios)))
    assert invalid[0, width + 1] == 0.0
