"""Candidates as fixed-length token sequences, one token per teacher unit, and back.

A token is the unit's (normalised) static features, what the unit looks like in the student (present, exact
width and kernel fraction, from ``CompressionSpace.candidate_features``) and the candidate's choices for it: the
keep flag and a one-hot of the chosen width ratio of its shrink group (and kernel ratio, when the space shrinks
kernels). The decoder side works from per-unit logits: removable units read their keep logit, units that share
a shrink group average their ratio logits, so every decode is a structurally valid candidate of the space; a
decode that cannot form a working network is repaired by putting removed units back, least sure first.

Candidates are encoded through their canonical form with ratios snapped back onto the ratio set, so two
spellings of the same student get the same tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from archcompress.space import FEATURE_SCHEMA, Candidate, CompressionSpace, InvalidCandidateError
from archcompress.space.ir import ConvSpec
from archcompress.space.resolve import group_width, shrink_kernel

STD_FLOOR = 1e-3  # a feature that hardly varies across units is centred, not blown up
NO_CHOICE = -1  # target index of units without a ratio (or kernel) decision
STUDENT_COLUMNS = (*FEATURE_SCHEMA.action_names, "param_share", "mac_share")  # candidate-dependent token columns


@dataclass(frozen=True)
class FeatureNorm:
    """Per-column mean and standard deviation of the unit features (over the units of the teacher it was made on)."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def of(cls, features: np.ndarray) -> FeatureNorm:
        """Normalisation of a ``(units, F)`` feature matrix; constant columns get std 1 (they become 0)."""
        std = features.std(axis=0)
        std = np.where(std < STD_FLOOR, 1.0, std)
        return cls(tuple(float(m) for m in features.mean(axis=0)), tuple(float(s) for s in std))

    def apply(self, features: np.ndarray) -> np.ndarray:
        """``(features - mean) / std``, float32."""
        return ((features - np.asarray(self.mean)) / np.asarray(self.std)).astype(np.float32)


@dataclass(frozen=True)
class Choices:
    """Per-unit choices of a batch of candidates: what the decoder must reconstruct."""

    keep: Tensor  # (B, L) float, 1 = keep; meaningful where TokenCodec.keep_mask
    ratio: Tensor  # (B, L) long, index into TokenCodec.ratio_values; NO_CHOICE where no shrink group
    kernel: Tensor  # (B, L) long, index into TokenCodec.kernel_values; NO_CHOICE where no kernel decision
    removable: Tensor  # (L,) bool: units whose keep flag is a decision


class TokenCodec:
    """Encodes candidates of one space as ``(B, L, token_dim)`` tensors and decodes per-unit logits back.

    Args:
        space: the compression space (L = number of its units).
        norm: feature normalisation; default: computed from this space (a loaded codec brings its own).
    """

    def __init__(self, space: CompressionSpace, norm: FeatureNorm | None = None) -> None:
        self.space = space
        features = space.features()
        self.norm = norm or FeatureNorm.of(features)
        if len(self.norm.mean) != features.shape[1]:
            raise ValueError(f"normalisation of {len(self.norm.mean)} features for {features.shape[1]} features")
        self.static = torch.as_tensor(self.norm.apply(features))  # (L, F)
        self.ratio_values = tuple(sorted(set(space.ratios)))
        self.kernel_values = tuple(sorted(set(space.kernel_ratios))) if space.kernel_units else ()
        units = space.units
        self.length = len(units)
        self.keep_mask = torch.tensor([u.keep_index is not None for u in units])  # (L,) bool
        self.ratio_mask = torch.tensor([u.shrink_group is not None for u in units])
        self.kernel_mask = torch.tensor([u.kernel_index is not None for u in units])
        # units that speak for each ratio / kernel position of a Candidate
        self.group_units: list[list[int]] = [[] for _ in space.shrink_groups]
        for u in units:
            if u.shrink_group is not None:
                self.group_units[u.shrink_group].append(u.index)
        # teacher width of each shrink group, to snap canonical ratios back onto the ratio set
        self._group_widths = [space.groups[g].width for g in space.shrink_groups]
        self._kernel_sizes = [_kernel_size(space, u) for u in space.kernel_units]
        self._unit_of_layer = {layer: u.index for u in units for layer in u.layers}

    # --- sizes -----------------------------------------------------------------------------------------

    @property
    def static_dim(self) -> int:
        """Width of the static (candidate-independent) part of a token."""
        return int(self.static.shape[1])

    @property
    def token_dim(self) -> int:
        """Width of a whole token: static features, student columns, keep flag, ratio and kernel one-hots."""
        return self.static_dim + len(STUDENT_COLUMNS) + 1 + len(self.ratio_values) + len(self.kernel_values)

    # --- encoding --------------------------------------------------------------------------------------

    def snap(self, candidate: Candidate) -> Candidate:
        """The canonical candidate with every ratio replaced by a ratio-set value that gives the same student."""
        canonical = self.space.canonical(candidate)
        ratios = tuple(self.ratio_values[i] for i in self._ratio_indices(canonical))
        kernels = tuple(self.kernel_values[i] for i in self._kernel_indices(canonical))
        return Candidate(canonical.keep, ratios, kernels)

    def _ratio_indices(self, canonical: Candidate) -> list[int]:
        min_channels = self.space.min_channels
        indices = []
        for ratio, width in zip(canonical.ratios, self._group_widths, strict=True):
            wanted = group_width(ratio, width, min_channels)
            indices.append(
                _closest(self.ratio_values, ratio, lambda r, w=width: group_width(r, w, min_channels), wanted)
            )
        return indices

    def _kernel_indices(self, canonical: Candidate) -> list[int]:
        indices = []
        for ratio, kernel in zip(canonical.kernel_ratios, self._kernel_sizes, strict=True):
            wanted = shrink_kernel(kernel, ratio)
            indices.append(_closest(self.kernel_values, ratio, lambda r, k=kernel: shrink_kernel(k, r), wanted))
        return indices

    def choices(self, candidates: Sequence[Candidate]) -> Choices:
        """Per-unit choice indices of (snapped) candidates, the decoder's targets."""
        keep = torch.ones(len(candidates), self.length)
        ratio = torch.full((len(candidates), self.length), NO_CHOICE, dtype=torch.long)
        kernel = torch.full((len(candidates), self.length), NO_CHOICE, dtype=torch.long)
        for b, candidate in enumerate(candidates):
            canonical = self.space.canonical(candidate)
            ratio_index = self._ratio_indices(canonical)
            kernel_index = self._kernel_indices(canonical)
            for u in self.space.units:
                if u.keep_index is not None:
                    keep[b, u.index] = float(canonical.keep[u.keep_index])
                if u.shrink_group is not None:
                    ratio[b, u.index] = ratio_index[u.shrink_group]
                if u.kernel_index is not None:
                    kernel[b, u.index] = kernel_index[u.kernel_index]
        return Choices(keep, ratio, kernel, self.keep_mask)

    def encode(self, candidates: Sequence[Candidate]) -> Tensor:
        """Token sequences of candidates, ``(B, L, token_dim)`` float32."""
        choices = self.choices(candidates)
        student = torch.stack([self.student_columns(c) for c in candidates])  # (B, L, len(STUDENT_COLUMNS))
        batch = len(candidates)
        parts = [self.static.expand(batch, -1, -1), student, choices.keep.unsqueeze(-1)]
        parts.append(_one_hot(choices.ratio, len(self.ratio_values)))
        if self.kernel_values:
            parts.append(_one_hot(choices.kernel, len(self.kernel_values)))
        return torch.cat(parts, dim=-1)

    def student_columns(self, candidate: Candidate) -> Tensor:
        """What each unit is in the student, ``(L, len(STUDENT_COLUMNS))``: present, width and kernel fraction,
        and the unit's student parameters and MACs as shares of the teacher's (0 for invalid candidates)."""
        actions = self.space.candidate_features(candidate)[:, len(FEATURE_SCHEMA) :]  # (L, 3)
        shares = np.zeros((self.length, 2), dtype=np.float32)
        try:
            plan = self.space.plan(candidate)
        except InvalidCandidateError:
            plan = None
        if plan is not None:
            teacher = self.space.teacher_cost
            for placed in plan.layers:
                unit = self._unit_of_layer[placed.layer]
                shares[unit] += (placed.params / teacher.params, placed.macs / max(teacher.macs, 1))
        shares *= self.length  # the teacher averages 1 per unit, like the other columns
        return torch.as_tensor(np.concatenate([actions, shares], axis=1))

    # --- decoding --------------------------------------------------------------------------------------

    def decode(self, keep_logits: Tensor, ratio_logits: Tensor, kernel_logits: Tensor | None = None) -> Candidate:
        """A valid candidate from one sequence's logits: ``(L,)``, ``(L, K)`` and ``(L, Kk)``.

        Units that are not removable are kept whatever their logit; units of one shrink group average their
        ratio logits. When the result cannot form a working network (e.g. every pooling removed, so the
        classifier would get too many inputs) removed units are put back in order of their keep logit until it
        can; the teacher's layout with the decoded widths is the last resort, the teacher itself the very last.
        """
        keep_logits = keep_logits.detach().float()
        ratio_logits = ratio_logits.detach().float()
        removable = self.space.removable_units
        keep = [bool(keep_logits[u] > 0) for u in removable]
        ratios = [self._pick(ratio_logits, units, self.ratio_values) for units in self.group_units]
        kernels: list[float] = []
        if self.space.kernel_units:
            assert kernel_logits is not None, "this space shrinks kernels: pass kernel_logits"
            kernels = [
                self._pick(kernel_logits.detach().float(), [u], self.kernel_values) for u in self.space.kernel_units
            ]
        candidate = Candidate(tuple(keep), tuple(ratios), tuple(kernels))
        if self.space.check(candidate) is None:
            return candidate
        # put removed units back, the one the decoder was least sure about first
        removed = sorted((p for p, k in enumerate(keep) if not k), key=lambda p: -float(keep_logits[removable[p]]))
        for position in removed:
            keep[position] = True
            candidate = Candidate(tuple(keep), tuple(ratios), tuple(kernels))
            if self.space.check(candidate) is None:
                return candidate
        return self.space.teacher_candidate()

    def _pick(self, logits: Tensor, units: Sequence[int], values: Sequence[float]) -> float:
        if not units:
            return max(values)  # no unit carries this group: it never changes the student
        return values[int(logits[list(units)].mean(dim=0).argmax())]

    def decode_batch(self, keep_logits: Tensor, ratio_logits: Tensor, kernel_logits: Tensor | None) -> list[Candidate]:
        """:meth:`decode` over a batch: ``(B, L)``, ``(B, L, K)``, ``(B, L, Kk)``."""
        return [
            self.decode(keep_logits[b], ratio_logits[b], None if kernel_logits is None else kernel_logits[b])
            for b in range(keep_logits.shape[0])
        ]

    def decode_choices(self, choices: Choices, index: int = 0) -> Candidate:
        """The candidate whose choices are ``choices[index]`` (exact inverse of :meth:`choices` for snapped ones)."""
        keep = choices.keep[index] * 2 - 1  # +-1 logits
        ratio = _one_hot(choices.ratio[index], len(self.ratio_values))
        kernel = _one_hot(choices.kernel[index], len(self.kernel_values)) if self.kernel_values else None
        return self.decode(keep, ratio, kernel)

    # --- saving ----------------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """Plain-data description saved with a codec model (loadable with ``weights_only=True``)."""
        return {
            "feature_schema": {"version": FEATURE_SCHEMA.version, "names": list(FEATURE_SCHEMA.names)},
            "ratio_values": list(self.ratio_values),
            "kernel_values": list(self.kernel_values),
            "norm": {"mean": list(self.norm.mean), "std": list(self.norm.std)},
        }


def _kernel_size(space: CompressionSpace, unit: int) -> int:
    spec = space.layers[space.units[unit].layers[0]].spec
    assert isinstance(spec, ConvSpec), "kernel units are plain convolutions"
    return int(spec.kernel[0])


def _closest(values: Sequence[float], ratio: float, size: Any, wanted: int) -> int:
    """Index of the value giving size ``wanted`` that is nearest ``ratio``; the nearest value if none does."""
    matching = [i for i, v in enumerate(values) if size(v) == wanted]
    pool = matching or range(len(values))
    return min(pool, key=lambda i: (abs(values[i] - ratio), -values[i]))


def _one_hot(index: Tensor, classes: int) -> Tensor:
    """One-hot of ``index`` (any shape, NO_CHOICE gives zeros), float, shape ``(*index.shape, classes)``."""
    valid = index >= 0
    hot = torch.nn.functional.one_hot(index.clamp(min=0), classes).float()
    return hot * valid.unsqueeze(-1)
