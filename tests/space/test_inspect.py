"""The unit table for ``archcompress inspect``."""

from __future__ import annotations

import json

from rich.console import Console

from archcompress.space import render_summary


def test_summary_is_json_and_matches_the_space(teacher_space) -> None:
    teacher, space = teacher_space("resnet20", (3, 32, 32))
    data = json.loads(json.dumps(space.summary()))
    assert data["input_shape"] == [3, 32, 32]
    assert len(data["rows"]) == len(space.units)
    totals = data["totals"]
    assert totals["params"] == sum(p.numel() for p in teacher.parameters())
    assert totals["removable"] == len(space.removable_units) and totals["shrink_groups"] == len(space.shrink_groups)
    first, block = data["rows"][0], data["rows"][1]
    assert first == {
        "index": 0,
        "kind": "conv",
        "name": "conv1",
        "branch": "main",
        "parent": None,
        "join": None,
        "in_shape": [3, 32, 32],
        "out_shape": [16, 32, 32],
        "params": 3 * 16 * 9 + 2 * 16,
        "macs": 16 * 32 * 32 * 3 * 9,
        "removable": False,
        "shrink_group": 0,
        "kernel_shrinkable": False,
    }
    assert block["kind"] == "block" and block["removable"] and block["name"] == "layers.0.0" and block["join"] == "add"
    # top-level rows add up to the totals (block rows already contain their members)
    top = [r for r in data["rows"] if r["parent"] is None]
    assert sum(r["params"] for r in top) == totals["params"] and sum(r["macs"] for r in top) == totals["macs"]


def test_rendered_table_lists_every_unit(teacher_space) -> None:
    _, space = teacher_space("lenet5", (1, 28, 28))
    table = render_summary(space.summary(), title="lenet5")
    assert table.row_count == len(space.units)
    console = Console(record=True, width=160)
    console.print(table)
    text = console.export_text()
    assert all(kind in text for kind in ("conv", "pool", "flatten", "linear"))
    assert f"{space.teacher_cost.params:,} params" in text


def test_rendered_table_marks_gates_and_concatenations_and_indents_nesting(teacher_space) -> None:
    _, space = teacher_space("se_residual", (3, 16, 16))
    console = Console(record=True, width=200)
    console.print(render_summary(space.summary()))
    lines = console.export_text().splitlines()
    gate = next(line for line in lines if "block (gate)" in line)
    se_reduce = next(line for line in lines if " se_reduce " in line)
    top = next(line for line in lines if " stem " in line)
    # the gate sits in the inverted residual's body (one level), its layers one level deeper
    column = top.index("conv")
    assert gate.index("block (gate)") == column + 2 and se_reduce.index("conv") == column + 4
    _, dense = teacher_space("dense", (3, 16, 16))
    console = Console(record=True, width=200)
    console.print(render_summary(dense.summary()))
    assert console.export_text().count("block (concat)") == 4
