"""Which units a candidate may remove: the one place that states the rule set.

The defaults are those of the N2N authors' code: never remove the first layer, the classifier, a strided
convolution, a fully connected layer or average pooling. Removing any other layer re-sizes the next layer's
input. Inside a residual block, body layers may be removed; the whole block may be removed when its shortcut
is the identity (the shortcut then remains), never when it is a projection. Shortcut layers, flatten and
adaptive (global) pooling are never removed because the network would no longer fit together.

A gate (``x * gate(x)``, e.g. squeeze-and-excitation) is removed as a whole or not at all: without its pool
or its sigmoid it would no longer be a gate. Removing it leaves ``x``, so it may go when ``x`` reaches it
unchanged (identity shortcut). Inside a nested block the same rules apply at every level.

Layers inside the branches of a concatenation (``torch.cat`` along channels) follow the body rules (an
Inception branch may lose its 1x1 reduction; a branch emptied this way passes its input on as its segment);
a concatenation of a tensor with a function of it, ``cat([x, f(x)])`` (a DenseNet dense layer), may be
removed whole, leaving ``x``; a concatenation of two computed branches (Fire, Inception) is never removed.

A strided convolution (``strided_conv``, off by default) leaves its downsampling behind when it goes: the student
holds, in its place, an average pooling over the conv's window with the conv's stride and padding
(:func:`downsampling`). It has no parameters and no MACs, and its output has the conv's spatial size, so every
later shape (a flatten's size, hence the next Linear's input) stays the teacher's; only the channels pass
through, as for any removed layer. A conv whose padding exceeds half its window has no such pooling (PyTorch's
limit) and is never removed. Inside a residual block a strided body conv may go the same way (body layers
allowed): the pooling keeps the body's output on the projection shortcut's grid. A body left with nothing but
such poolings is an emptied body, and the block is its projection shortcut alone, which downsamples itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from archcompress.space.ir import AdaptivePoolSpec, ConvSpec, LayerSpec, LinearSpec, MeanSpec, PoolSpec


@dataclass(frozen=True)
class RemovalRules:
    """Switches over the default rule set; ``True`` allows removing that kind of unit."""

    first_layer: bool = False  # the first unit with weights
    classifier: bool = False  # the last Linear
    strided_conv: bool = False  # a conv with stride > 1 in any dimension (its downsampling stays: a pooling)
    linear: bool = False  # any fully connected layer
    avg_pool: bool = False  # average pooling with a fixed window
    max_pool: bool = True  # max pooling (removing one multiplies every later layer's MACs, saves no params)
    body_layers: bool = True  # layers inside a residual block's body
    identity_blocks: bool = True  # a whole residual block whose shortcut is the identity
    gates: bool = True  # a whole gate (squeeze-and-excitation) applied to an unchanged tensor
    dense_layers: bool = True  # a dense layer, cat([x, f(x)]) (DenseNet): its segment leaves the concatenation

    def layer_removable(self, specs: tuple[LayerSpec, ...], *, first: bool, classifier: bool, branch: str) -> bool:
        """Whether a plain unit (a weighted layer with its norm/activation, or a single layer) may go."""
        if branch in ("shortcut", "gate") or (branch in ("body", "concat") and not self.body_layers):
            return False
        if (first and not self.first_layer) or (classifier and not self.classifier):
            return False
        head = specs[0]
        if isinstance(head, ConvSpec) and max(head.stride) > 1:
            return self.strided_conv and downsampling(head) is not None
        if isinstance(head, LinearSpec):
            return self.linear
        if isinstance(head, PoolSpec):
            return self.avg_pool if head.mode == "avg" else self.max_pool
        # flatten and global pooling hold the classifier's input size together
        # slices and shuffles define which channels the next layers see
        return head.op not in ("flatten", AdaptivePoolSpec.op, MeanSpec.op, "slice", "shuffle")

    def block_removable(
        self, identity_shortcut: bool, join: str = "add", branch: str = "main", identity_body: bool = False
    ) -> bool:
        """Whether a whole block may go, leaving its identity branch; ``join`` "mul" is a gate, "cat" a concat."""
        if branch in ("shortcut", "gate"):
            return False
        if join == "cat":  # cat([x, f(x)]) without f(x) is x: a dense layer's segment leaves the concatenation
            return (identity_shortcut or identity_body) and self.dense_layers
        if not identity_shortcut:
            return False
        return self.gates if join == "mul" else self.identity_blocks


def downsampling(spec: LayerSpec) -> PoolSpec | None:
    """The parameter-free layer a removed strided conv leaves behind; ``None`` for other layers.

    An average pooling over the conv's window span ``dilation * (kernel - 1) + 1`` with its stride and padding
    gives the conv's output size, ``(n + 2p - span) // s + 1``, on every input size. ``None`` too when the
    padding exceeds half the span, which PyTorch's pooling refuses.
    """
    if not isinstance(spec, ConvSpec) or max(spec.stride) == 1:
        return None
    span = tuple(d * (k - 1) + 1 for k, d in zip(spec.kernel, spec.dilation, strict=True))
    if any(p > w // 2 for p, w in zip(spec.padding, span, strict=True)):
        return None
    return PoolSpec(
        dim=spec.dim, mode="avg", kernel=span, stride=spec.stride, padding=spec.padding, dilation=(1,) * spec.dim
    )


DEFAULT_RULES = RemovalRules()
