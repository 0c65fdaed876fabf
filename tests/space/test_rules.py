"""The default removal rule set (N2N authors' code)."""

from __future__ import annotations

from archcompress.space import CompressionSpace, RemovalRules
from archcompress.space.ir import ConvSpec


def test_default_rules_on_resnet(teacher_space) -> None:
    _, space = teacher_space("resnet20", (3, 32, 32))
    units = space.units
    assert not units[0].removable  # first layer
    assert not units[-1].removable  # classifier
    for unit in units:
        spec = space.layers[unit.layers[0]].spec if unit.layers else None
        if isinstance(spec, ConvSpec) and max(spec.stride) > 1:
            assert not unit.removable, unit.name  # strided convolutions
        if unit.branch == "shortcut":
            assert not unit.removable, unit.name  # projection shortcuts stay
        if unit.kind == "block":
            assert unit.removable == (not unit.shortcut), unit.name  # only identity blocks go
        if unit.kind in ("linear", "flatten", "adaptive_pool"):
            assert not unit.removable, unit.name
    # body convs without stride may go
    assert units[2].branch == "body" and units[2].removable


def test_default_rules_on_a_plain_net(teacher_space) -> None:
    _, space = teacher_space("sequential", (3, 16, 16))
    removable = {u.kind: u.removable for u in space.units if u.kind in ("pool", "dropout")}
    kinds = [(u.kind, u.removable) for u in space.units]
    max_pool, avg_pool = (u for u in space.units if u.kind == "pool")
    assert max_pool.removable and not avg_pool.removable  # average pooling is never removed
    assert ("dropout", True) in kinds and removable
    assert all(not u.removable for u in space.units if u.kind == "linear")  # fully connected layers


def test_rules_are_an_option(teacher_space) -> None:
    teacher, _ = teacher_space("lenet5", (1, 28, 28))
    space = CompressionSpace.from_model(teacher, (1, 28, 28), rules=RemovalRules(linear=True))
    linears = [u for u in space.units if u.kind == "linear"]
    assert [u.removable for u in linears] == [True, True, False]  # the classifier still stays


def test_max_pooling_can_be_kept(teacher_space) -> None:
    from archcompress.evaluate import SpaceOptions

    teacher, default = teacher_space("vgg11", (1, 28, 28))
    kept = SpaceOptions(removable=("block", "body")).space_of(teacher, (1, 28, 28))
    pools = [u.index for u in default.units if u.kind == "pool"]
    assert pools and all(default.units[i].removable for i in pools)
    assert not any(kept.units[i].removable for i in pools)
    assert len(kept.removable_units) == len(default.removable_units) - len(pools)
