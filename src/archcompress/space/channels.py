"""Channel flow: which layers' channels must stay equal, for the teacher and for any keep mask.

Every weighted layer that makes new channels (conv, linear; not depthwise conv) opens a channel *variable*;
depthwise convs, norms, activations, pools and flatten pass their input's variable on. A residual addition
merges the variables of its two operands. The connected variables of the teacher are its *channel groups*;
removing layers re-routes variables, so a candidate may merge groups (e.g. removing the last conv of a
block body ties the previous conv's output to the residual stream). A residual block whose body layers are
all removed adds nothing: it is just its shortcut.

A concatenation along channels (``join`` "cat") opens a *composite* variable: its channels are its body's,
then its shortcut's. Composite variables are never merged (a concatenation added to or gated with another
tensor is refused); their channel group is the tuple of the leaf groups they are made of, in order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeAlias

INPUT = -1  # the variable of the network input's channels
_COMPOSITE = -2  # composite (concatenation) variables are numbered -2, -3, ...

# a channel group: a leaf group's index, or the tuple of leaf groups a concatenation is made of
GroupKey: TypeAlias = int | tuple[int, ...]


class FlowNode(Protocol):
    """What the flow needs from a unit."""

    @property
    def kind(self) -> str: ...
    @property
    def layers(self) -> tuple[int, ...]: ...
    @property
    def body(self) -> tuple[int, ...]: ...
    @property
    def shortcut(self) -> tuple[int, ...]: ...
    @property
    def join(self) -> str: ...


class UnionFind:
    """Disjoint sets over ints, with path halving."""

    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, x: int) -> int:
        """Representative of ``x``'s set."""
        parent = self.parent
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(self, a: int, b: int) -> int:
        """Merge the sets of ``a`` and ``b``; returns the new representative."""
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)  # the earlier variable represents the set
        return min(ra, rb)


@dataclass(frozen=True)
class Flow:
    """Channel variables of each kept layer's input and output, and the merges between them."""

    sets: UnionFind
    in_var: dict[int, int]  # layer id -> variable of its input channels
    out_var: dict[int, int]  # layer id -> variable of its output channels
    final: int  # variable of the network output
    merged: frozenset[int]  # variables that met in a residual addition
    concat: dict[int, tuple[int, int]]  # composite variable -> (body variable, shortcut variable)
    merged_concat: bool = False  # a concatenation met another tensor in an addition or a gate

    def leaves(self, var: int) -> tuple[int, ...]:
        """The non-composite variables (set representatives) whose channels ``var`` holds, in order."""
        if var in self.concat:
            body, shortcut = self.concat[var]
            return self.leaves(body) + self.leaves(shortcut)
        return (self.sets.find(var),)


def channel_flow(
    units: Sequence[FlowNode],
    main: Sequence[int],
    produces: Sequence[bool],
    kept: Callable[[int], bool],
) -> Flow:
    """Follow channel variables through the kept units (a removed unit passes its input on)."""
    sets = UnionFind()
    in_var: dict[int, int] = {}
    out_var: dict[int, int] = {}
    merged: set[int] = set()
    concat: dict[int, tuple[int, int]] = {}
    merged_concat = False
    sets.find(INPUT)

    def walk(seq: Sequence[int], var: int) -> int:
        nonlocal merged_concat
        for index in seq:
            if not kept(index):
                continue
            unit = units[index]
            if unit.kind == "block" and unit.join == "cat":
                body, shortcut = walk(unit.body, var), walk(unit.shortcut, var)
                var = _COMPOSITE - len(concat)
                concat[var] = (body, shortcut)
                continue
            if unit.kind == "block" and unit.join == "add" and not any(kept(u) for u in unit.body):
                var = walk(unit.shortcut, var)  # an emptied body adds nothing: the block is its shortcut
                continue
            if unit.kind == "block":
                body, shortcut = walk(unit.body, var), walk(unit.shortcut, var)
                merged_concat = merged_concat or body in concat or shortcut in concat
                merged.update((body, shortcut))
                var = sets.union(body, shortcut)
                continue
            for layer in unit.layers:
                in_var[layer] = var
                if produces[layer]:
                    var = layer
                    sets.find(var)
                out_var[layer] = var
        return var

    final = walk(main, INPUT)
    return Flow(sets, in_var, out_var, final, frozenset(merged), concat, merged_concat)
