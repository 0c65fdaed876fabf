"""Concatenation along channels: dense blocks, Fire and Inception modules.

A concatenation's channels are the union of its segments, each a channel group of its own: shrinking a
producer shrinks its segment, and the layers reading the concatenation take the kept columns of every
segment at that segment's teacher offset. Full-width equality with the teacher and exact costs of random
candidates are checked for every supported teacher in ``test_build.py``.
"""

from __future__ import annotations

import pytest
import torch

from archcompress.errors import ArchcompressError
from archcompress.models import create_model
from archcompress.space import Candidate, CompressionSpace, count_params, load_student, measure_macs, save_student


def _top(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the k largest scores, ascending (the space's rule for kept channels)."""
    return torch.argsort(scores, descending=True, stable=True)[:k].sort().values


def _l1(conv: torch.nn.Module) -> torch.Tensor:
    return conv.weight.detach().abs().flatten(1).sum(1)


def _student_modules(space: CompressionSpace, candidate: Candidate) -> dict[str, torch.nn.Module]:
    """Teacher module path -> the student module built from it."""
    result = space.build(candidate)
    modules = dict(result.module.named_modules())
    return {space.layers[p.layer].source: modules[p.path] for p in space.plan(candidate).layers}


def _cat_blocks(space: CompressionSpace) -> list:
    return [u for u in space.units if u.kind == "block" and u.join == "cat"]


def test_dense_block_and_fire_module_structure(teacher_space) -> None:
    _, space = teacher_space("dense", (3, 16, 16))
    blocks = _cat_blocks(space)
    assert len(blocks) == 4  # three dense layers, one Fire module
    dense, fire = blocks[:3], blocks[3]
    # cat([x, f(x)]): the identity first, the dense layer second; each is removable as a whole
    assert all(b.body == () and b.removable for b in dense)
    assert [space.units[b.shortcut[-1]].name for b in dense] == [f"layers.{i}.conv" for i in range(3)]
    assert not fire.removable and [space.units[i].name for i in (*fire.body, *fire.shortcut)] == [
        "expand1",
        "expand3",
    ]
    inside = [space.units[i] for b in blocks for i in (*b.body, *b.shortcut)]
    # layers inside the branches follow the body rules: an emptied branch passes its input on as its segment
    assert all(u.branch == "concat" and u.removable for u in inside)
    # every segment is a shrink group of its own; a concatenation output is none
    names = {u.name: u for u in space.units}
    growth = [names[f"layers.{i}.conv"].shrink_group for i in range(3)]
    assert len({names["stem"].shrink_group, *growth, names["expand1"].shrink_group}) == 5
    assert all(b.shrink_group is None for b in blocks)
    assert names["norm"].in_shape == (40, 16, 16) and fire.out_shape == (32, 8, 8)


def test_half_width_consumers_take_each_segments_kept_columns(teacher_space) -> None:
    teacher, space = teacher_space("dense", (3, 16, 16), min_channels=1)
    candidate = space.uniform_candidate(0.5)
    student = _student_modules(space, candidate)
    assert space.build(candidate).fresh == 0
    # norm over cat(stem 16 -> 8, three dense outputs 8 -> 4 each), each segment at its teacher offset
    segments = [_top(_l1(teacher.stem), 8)] + [
        offset + _top(_l1(teacher.layers[i].conv), 4) for i, offset in enumerate((16, 24, 32))
    ]
    concat = torch.cat(segments)
    exact = {"rtol": 0, "atol": 0}
    torch.testing.assert_close(student["norm"].running_mean, teacher.norm.running_mean[concat], **exact)
    transition = _top(_l1(teacher.transition), 12)
    torch.testing.assert_close(student["transition"].weight, teacher.transition.weight[transition][:, concat], **exact)
    # the last dense layer reads cat(stem, layer 0, layer 1)
    torch.testing.assert_close(
        student["layers.2.conv"].weight,
        teacher.layers[2].conv.weight[_top(_l1(teacher.layers[2].conv), 4)][:, concat[:16]],
        **exact,
    )
    # the classifier reads the flattened Fire output: 16 positions per channel of cat(expand1, expand3)
    fire = torch.cat([_top(_l1(teacher.expand1), 8), 16 + _top(_l1(teacher.expand3), 8)])
    columns = (fire[:, None] * 16 + torch.arange(16)).reshape(-1)
    torch.testing.assert_close(student["fc"].weight, teacher.fc.weight[:, columns], **exact)


def test_removing_a_dense_layer_drops_its_segment_and_keeps_the_other_columns(teacher_space) -> None:
    teacher, space = teacher_space("dense", (3, 16, 16))
    middle = _cat_blocks(space)[1]
    keep = [True] * len(space.removable_units)
    keep[middle.keep_index] = False
    candidate = Candidate(tuple(keep), (1.0,) * len(space.shrink_groups))
    result = space.build(candidate)
    assert result.fresh == 0  # every consumer still finds its input channels in the teacher's
    assert result.params == count_params(result.module) and result.macs == measure_macs(result.module, (3, 16, 16))
    student = _student_modules(space, candidate)
    remaining = torch.cat([torch.arange(24), torch.arange(32, 40)])  # the segment 24..31 left
    exact = {"rtol": 0, "atol": 0}
    torch.testing.assert_close(student["transition"].weight, teacher.transition.weight[:, remaining], **exact)
    torch.testing.assert_close(student["norm"].running_var, teacher.norm.running_var[remaining], **exact)
    torch.testing.assert_close(student["layers.2.conv"].weight, teacher.layers[2].conv.weight[:, :24], **exact)
    removed = sum(p.numel() for p in teacher.layers[1].parameters())
    removed += 8 * 8 * 9 + 2 * 8 + 2 * 8 + 24 * 8  # layer 2's columns and BN, the norm's and transition's
    assert result.params == space.teacher_cost.params - removed


def test_concat_students_save_and_reload(teacher_space, tmp_path) -> None:
    _, space = teacher_space("dense", (3, 16, 16))
    result = space.build(space.sample(5))
    loaded = load_student(save_student(result, tmp_path / "student"))
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), result.module.eval()(x), rtol=0, atol=0)


@pytest.mark.filterwarnings("ignore:The default weight initialization:FutureWarning")
@pytest.mark.parametrize(
    ("name", "shape", "concats"),
    [
        # 9 Inception modules of 4 branches: 3 binary concatenations each
        ("googlenet", (3, 96, 96), 27),
        # Mixed_5b-d and 6b-e: 4 branches (3 each); 6a and 7a: 3 branches (2 each); 7b/c: 4 branches plus two
        # inner two-way concatenations (5 each)
        ("inception_v3", (3, 299, 299), 35),
    ],
)
def test_inception_modules_become_nested_concatenations(name, shape, concats) -> None:
    torch.manual_seed(0)
    space = CompressionSpace.from_model(create_model(f"torchvision:{name}", shape, 10).eval(), shape)
    blocks = _cat_blocks(space)
    assert len(blocks) == concats
    assert not any(b.removable for b in blocks)


def test_a_concatenation_added_to_its_input_is_refused() -> None:
    class CatResidual(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = torch.nn.Conv2d(3, 8, 1)
            self.a = torch.nn.Conv2d(8, 4, 1)
            self.b = torch.nn.Conv2d(8, 4, 1)
            self.fc = torch.nn.Linear(8, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.stem(x)
            x = x + torch.cat([self.a(x), self.b(x)], 1)
            return self.fc(x.mean((2, 3)))

    with pytest.raises(ArchcompressError, match="concatenation"):
        CompressionSpace.from_model(CatResidual(), (3, 4, 4))


def test_split_and_channel_shuffle_keep_the_widths_they_permute(teacher_space) -> None:
    teacher, space = teacher_space("shuffle", (3, 8, 8))
    kinds = [space.layers[i].spec.op for u in space.units for i in u.layers]
    assert kinds.count("slice") == 4 and kinds.count("shuffle") == 1
    names = {u.name: u for u in space.units}
    # the channels a slice or a shuffle sees keep the teacher's width; the branch's hidden width and the
    # channels after the last concatenation (read by a conv only) shrink
    assert names["stem"].shrink_group is None and names["branch.5"].shrink_group is None
    assert all(names[n].shrink_group is not None for n in ("branch.0", "tail", "head"))
    candidate = space.uniform_candidate(0.5)
    arch = space.arch(candidate)
    result = space.build(candidate)
    assert result.params == count_params(result.module) < space.teacher_cost.params
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        # half-width hidden layers change the logits, but the full-width student is the teacher exactly
        full = space.build(space.teacher_candidate()).module.eval()
        torch.testing.assert_close(full(x), teacher(x), rtol=0, atol=1e-6)
    assert arch.layers[0].out_channels == 16  # the stem's 16 channels are sliced: they stay


def test_an_emptied_fire_branch_passes_its_input_on_as_its_segment(teacher_space) -> None:
    _, space = teacher_space("dense", (3, 16, 16))
    expand1 = next(u for u in space.units if u.name == "expand1")
    keep = [True] * len(space.removable_units)
    keep[expand1.keep_index] = False
    candidate = Candidate(tuple(keep), (1.0,) * len(space.shrink_groups))
    result = space.build(candidate)
    # cat([squeeze output (12), expand3 (16)]) pooled to 4x4 feeds the classifier
    assert result.arch.layers[-1].in_features == (12 + 16) * 16
    assert result.params == count_params(result.module) and result.macs == measure_macs(result.module, (3, 16, 16))
    assert result.fresh_layers == (f"layers.{len(result.arch.layers) - 1}",)  # the classifier: other columns


def test_a_removal_that_feeds_shrinkable_channels_into_a_shuffle_is_invalid(teacher_space) -> None:
    _, space = teacher_space("torchvision:shufflenet_v2_x0_5", (3, 64, 64))
    # stage2's first block: branch1 = depthwise conv, BN, 1x1 conv; without the 1x1 conv its segment would
    # be the stem's (shrinkable) channels, which the shuffle after the concatenation cannot take
    unit = next(u for u in space.units if u.name == "stage2.0.branch1.2")
    keep = [True] * len(space.removable_units)
    keep[unit.keep_index] = False
    reason = space.check(Candidate(tuple(keep), (1.0,) * len(space.shrink_groups)))
    assert reason is not None and "a shuffle would read channels whose width is not fixed" in reason
