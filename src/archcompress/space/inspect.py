"""The unit table of a space as JSON-able data and as a ``rich`` table (``archcompress inspect``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.table import Table

if TYPE_CHECKING:
    from archcompress.space.space import CompressionSpace


def summary(space: CompressionSpace) -> dict[str, Any]:
    """Rows (one per unit) and totals; every value is a JSON type."""
    rows = [
        {
            "index": u.index,
            "kind": u.kind,
            "name": u.name,
            "branch": u.branch,
            "parent": u.parent,
            "join": u.join if u.kind == "block" else None,
            "in_shape": list(u.in_shape),
            "out_shape": list(u.out_shape),
            "params": u.params,
            "macs": u.macs,
            "removable": u.removable,
            "shrink_group": u.shrink_group,
            "kernel_shrinkable": u.kernel_index is not None,
        }
        for u in space.units
    ]
    cost = space.teacher_cost
    totals = {
        "units": len(space.units),
        "removable": len(space.removable_units),
        "shrink_groups": len(space.shrink_groups),
        "kernel_units": len(space.kernel_units),
        "params": cost.params,
        "macs": cost.macs,
    }
    return {"input_shape": list(space.input_shape), "rows": rows, "totals": totals}


def _shape(shape: list[int]) -> str:
    return "x".join(str(d) for d in shape)


def render_summary(data: dict[str, Any], title: str | None = None) -> Table:
    """A ``rich`` table of :func:`summary` output; block members are indented under their block, gates and
    concatenations are marked."""
    table = Table(title=title, caption=_caption(data["totals"]), show_lines=False)
    for column, justify in (
        ("#", "right"),
        ("kind", "left"),
        ("name", "left"),
        ("shape in -> out", "left"),
        ("params", "right"),
        ("MACs", "right"),
        ("removable", "center"),
        ("group", "right"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    depth: dict[int, int] = {}
    for row in data["rows"]:  # pre-order: a block's row comes before its members'
        depth[row["index"]] = 0 if row["parent"] is None else depth[row["parent"]] + 1
        indent = "  " * depth[row["index"]]
        join = {"mul": " (gate)", "cat": " (concat)"}.get(row.get("join") or "", "")
        kind = row["kind"] + join + (" (shortcut)" if row["branch"] == "shortcut" else "")
        table.add_row(
            str(row["index"]),
            indent + kind,
            row["name"],
            f"{_shape(row['in_shape'])} -> {_shape(row['out_shape'])}",
            f"{row['params']:,}",
            f"{row['macs']:,}",
            "yes" if row["removable"] else "",
            "" if row["shrink_group"] is None else str(row["shrink_group"]),
        )
    return table


def _caption(totals: dict[str, Any]) -> str:
    return (
        f"{totals['units']} units, {totals['removable']} removable, {totals['shrink_groups']} shrink groups; "
        f"{totals['params']:,} params, {totals['macs']:,} MACs per sample"
    )
