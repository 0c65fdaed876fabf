"""Every switch of ``RemovalRules`` on its own: flipping one changes exactly the units of its kind."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from archcompress.space import CompressionSpace, RemovalRules
from archcompress.space.ir import ConvSpec


class AllKinds(nn.Module):
    """A user model with one unit of every kind the rules decide on."""

    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.down = nn.Sequential(nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU())  # 28 -> 14
        self.max_pool = nn.MaxPool2d(2)  # 14 -> 7
        self.body = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1))
        self.squeeze = nn.Sequential(nn.Conv2d(8, 4, 1), nn.ReLU(), nn.Conv2d(4, 8, 1), nn.Sigmoid())
        self.dense = nn.Sequential(nn.Conv2d(8, 4, 3, padding=1), nn.ReLU())
        self.avg_pool = nn.AvgPool2d(2)  # 7 -> 3
        self.hidden = nn.Sequential(nn.Linear(12 * 3 * 3, 32), nn.ReLU())
        self.classifier = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 1, 28, 28)
        x = self.max_pool(self.down(self.first(x)))
        x = torch.relu(x + self.body(x))  # an identity residual block
        x = x * self.squeeze(x.mean((2, 3), keepdim=True))  # a squeeze-and-excitation gate
        x = torch.cat([x, self.dense(x)], 1)  # a dense layer: (B, 8 + 4, 7, 7)
        return self.classifier(self.hidden(torch.flatten(self.avg_pool(x), 1)))


def kind_of(space: CompressionSpace, unit_index: int) -> str:
    """Which rule decides on the unit: first_layer, classifier, strided_conv, linear, avg_pool, max_pool,
    body_layers, identity_blocks, or other."""
    unit = space.units[unit_index]
    if unit.kind == "block":
        return {"add": "identity_blocks", "mul": "gates", "cat": "dense_layers"}[unit.join]
    if unit.branch in ("body", "concat"):
        return "body_layers"
    spec = space.layers[unit.layers[0]].spec if unit.layers else None
    if unit.name.startswith("first"):
        return "first_layer"
    if unit.name.startswith("classifier"):
        return "classifier"
    if isinstance(spec, ConvSpec) and max(spec.stride) > 1:
        return "strided_conv"
    if unit.kind == "linear":
        return "linear"
    if unit.kind == "pool":
        return "max_pool" if "max" in unit.name else "avg_pool"
    return "other"


@pytest.fixture(scope="module")
def model() -> nn.Module:
    torch.manual_seed(0)
    return AllKinds().eval()


def removable(model: nn.Module, rules: RemovalRules) -> dict[int, bool]:
    space = CompressionSpace.from_model(model, (1, 28, 28), rules=rules)
    return {unit.index: unit.removable for unit in space.units}


def test_the_model_has_a_unit_of_every_kind(model: nn.Module) -> None:
    space = CompressionSpace.from_model(model, (1, 28, 28))
    kinds = {kind_of(space, u.index) for u in space.units}
    assert {f.name for f in dataclasses.fields(RemovalRules)} <= kinds


@pytest.mark.parametrize("switch", [f.name for f in dataclasses.fields(RemovalRules)])
def test_each_switch_changes_only_its_own_units(model: nn.Module, switch: str) -> None:
    # the classifier is also a fully connected layer: its switch shows once linear layers may go
    default = RemovalRules(linear=True) if switch == "classifier" else RemovalRules()
    flipped = dataclasses.replace(default, **{switch: not getattr(default, switch)})
    space = CompressionSpace.from_model(model, (1, 28, 28))
    before, after = removable(model, default), removable(model, flipped)
    changed = {index for index in before if before[index] != after[index]}
    assert changed, f"flipping {switch} changed nothing"
    assert {kind_of(space, index) for index in changed} == {switch}
    assert all(after[index] == getattr(flipped, switch) for index in changed)


def test_removable_kinds_map_one_to_one_onto_the_switches() -> None:
    from archcompress.space.options import DEFAULT_REMOVABLE, N2N_CODE_REMOVABLE, REMOVABLE_KINDS, SpaceOptions

    assert SpaceOptions(removable=N2N_CODE_REMOVABLE).rules() == RemovalRules()  # the N2N code's rule set
    assert set(N2N_CODE_REMOVABLE) == {"block", "body", "max-pool", "gate", "dense-layer"}
    assert SpaceOptions().rules() == RemovalRules(linear=True) and set(DEFAULT_REMOVABLE) == {
        *N2N_CODE_REMOVABLE,
        "linear",
    }
    for kind, switch in REMOVABLE_KINDS.items():
        rules = SpaceOptions(removable=(kind,)).rules()
        on = {f.name for f in dataclasses.fields(rules) if getattr(rules, f.name)}
        assert on == {switch}, kind


def test_the_hidden_linear_of_the_1d_cnn_is_removable_by_default_and_the_classifier_never() -> None:
    from archcompress.models import create_model
    from archcompress.space.options import N2N_CODE_REMOVABLE, SpaceOptions

    torch.manual_seed(0)
    model = create_model("cnn1d", (1, 40), 10, {}).eval()
    n2n_code = SpaceOptions(removable=N2N_CODE_REMOVABLE).space_of(model, (1, 40))
    with_linear = SpaceOptions().space_of(model, (1, 40))
    linears = [u.index for u in n2n_code.units if u.kind == "linear"]
    assert len(linears) >= 2 and not any(n2n_code.units[i].removable for i in linears)
    assert [with_linear.units[i].removable for i in linears] == [True] * (len(linears) - 1) + [False]
    # removing the hidden linear gives a valid, much smaller student
    keep = [True] * len(with_linear.removable_units)
    keep[with_linear.units[linears[0]].keep_index] = False  # type: ignore[index]
    candidate = with_linear.uniform_candidate(1.0, tuple(keep))
    assert with_linear.check(candidate) is None
    assert with_linear.cost(candidate).params < with_linear.teacher_cost.params / 2


def test_an_unknown_kind_is_refused_in_one_line() -> None:
    from archcompress.errors import ArchcompressError
    from archcompress.space.options import parse_removable

    assert parse_removable("linear, max-pool") == ("linear", "max-pool")
    assert parse_removable("none") == ()
    with pytest.raises(ArchcompressError, match="'fc' is not a kind of unit: use a comma list of block, body"):
        parse_removable("fc")
