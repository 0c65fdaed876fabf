"""The codec model: a 1-D CNN encoder from token sequences to a per-unit embedding z, a 1-D CNN decoder from z
back to per-unit keep and ratio logits, and two MLP heads on pooled z that predict val accuracy and log params.

``loss = recon + acc_weight * mse(acc) + params_weight * mse(log params)``, the regression terms on standardised
targets and only over candidates that trained (``ok``). The decoder also reads the static unit features, so z
only has to carry the candidate's choices, not where each unit sits. Every layer is a convolution over the unit
axis or acts on pooled z, so one model runs on sequences of any length (teachers with other unit counts).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from archcompress.search.embedding.codec import NO_CHOICE, Choices

STD_FLOOR = 1e-3  # a regression target with (almost) no spread is centred, not blown up
LOG_EPS = 1e-6  # keeps the predicted log params finite


@dataclass(frozen=True)
class Prediction:
    """Head outputs in real units: val accuracy and ``ln(params / teacher params)``, each ``(B,)``."""

    accuracy: Tensor
    log_params: Tensor


@dataclass(frozen=True)
class CodecData:
    """Training data of the codec model: tokens, decoder targets, and regression targets where known."""

    tokens: Tensor  # (N, L, D)
    choices: Choices
    accuracy: Tensor  # (N,) val accuracy; anything where not ok
    log_params: Tensor  # (N,) ln(params / teacher params); anything where not ok
    ok: Tensor  # (N,) bool: the candidate trained, its regression targets count

    def __len__(self) -> int:
        return int(self.tokens.shape[0])

    def subset(self, index: Tensor) -> CodecData:
        """The samples at ``index``."""
        c = self.choices
        choices = Choices(c.keep[index], c.ratio[index], c.kernel[index], c.removable)
        return CodecData(self.tokens[index], choices, self.accuracy[index], self.log_params[index], self.ok[index])


@dataclass(frozen=True)
class Losses:
    """One evaluation of the loss; the floats of :meth:`as_dict` go to history and TensorBoard."""

    total: Tensor
    recon: Tensor
    acc_mse: Tensor  # standardised units
    params_mse: Tensor

    def as_dict(self) -> dict[str, float]:
        """Plain floats."""
        return {name: float(getattr(self, name)) for name in ("total", "recon", "acc_mse", "params_mse")}


class ConvStack(nn.Module):
    """``layers`` same-length convolutions with GELU and a 1x1 projection, plus a linear 1x1 path beside them.

    ``(B, C_in, L) -> (B, C_out, L)``. The linear path lets the choices pass straight through (the encoder and
    decoder learn a near-identity fast, from few samples); the convolutions add context from neighbouring units.
    """

    def __init__(self, channels_in: int, hidden: int, channels_out: int, layers: int, kernel: int) -> None:
        super().__init__()
        modules: list[nn.Module] = []
        width = channels_in
        for _ in range(layers):
            modules += [nn.Conv1d(width, hidden, kernel, padding=kernel // 2), nn.GELU()]
            width = hidden
        modules.append(nn.Conv1d(width, channels_out, 1))
        self.convs = nn.Sequential(*modules)
        self.linear = nn.Conv1d(channels_in, channels_out, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.convs(x) + self.linear(x)


class CodecModel(nn.Module):
    """Encoder, decoder and predictor heads (see the module docstring); rebuilt with ``CodecModel(**config)``."""

    target_mean: Tensor  # (2,) buffers: accuracy and log params standardisation
    target_std: Tensor

    def __init__(
        self,
        token_dim: int,
        static_dim: int,
        ratio_classes: int,
        kernel_classes: int = 0,
        hidden: int = 64,
        embed_channels: int = 16,
        layers: int = 2,
        kernel: int = 3,
    ) -> None:
        super().__init__()
        if kernel % 2 == 0:
            raise ValueError(f"the convolution kernel must be odd (same-length output), got {kernel}")
        self.config: dict[str, int] = {
            "token_dim": token_dim, "static_dim": static_dim, "ratio_classes": ratio_classes,
            "kernel_classes": kernel_classes, "hidden": hidden, "embed_channels": embed_channels,
            "layers": layers, "kernel": kernel,
        }  # fmt: skip
        self.ratio_classes = ratio_classes
        self.kernel_classes = kernel_classes
        self.encoder = ConvStack(token_dim, hidden, embed_channels, layers, kernel)
        self.decoder = ConvStack(
            embed_channels + static_dim, hidden, 1 + ratio_classes + kernel_classes, layers, kernel
        )
        self.acc_head = nn.Sequential(nn.Linear(2 * embed_channels, hidden), nn.GELU(), nn.Linear(hidden, 1))
        # parameters add up over units: a non-negative contribution per unit, log of their mean (below)
        self.params_head = nn.Conv1d(embed_channels, 1, 1)
        # standardisation of the regression targets (set by fit from the data it trains on)
        self.register_buffer("target_mean", torch.zeros(2))
        self.register_buffer("target_std", torch.ones(2))

    def encode(self, tokens: Tensor) -> Tensor:
        """``(B, L, D)`` tokens -> ``(B, C, L)`` embedding."""
        return self.encoder(tokens.transpose(1, 2))

    def decode(self, z: Tensor, static: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """Logits from ``z`` ``(B, C, L)`` and static features ``(L, F)``: keep ``(B, L)``, ratio ``(B, L, K)``,
        kernel ``(B, L, Kk)`` (None when the space does not shrink kernels)."""
        static = static.t().unsqueeze(0).expand(z.shape[0], -1, -1)  # (B, F, L)
        out = self.decoder(torch.cat([z, static], dim=1)).transpose(1, 2)  # (B, L, 1 + K + Kk)
        keep = out[..., 0]
        ratio = out[..., 1 : 1 + self.ratio_classes]
        kernel = out[..., 1 + self.ratio_classes :] if self.kernel_classes else None
        return keep, ratio, kernel

    def predict_standardised(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """Head outputs on standardised targets, ``(B,)`` each."""
        pooled = torch.cat([z.mean(dim=2), z.amax(dim=2)], dim=1)  # (B, 2C)
        acc = self.acc_head(pooled).squeeze(1)
        # student params / teacher params = mean over units of (unit share * L), the token's param_share column
        per_unit = F.softplus(self.params_head(z)).squeeze(1)  # (B, L)
        log_params = torch.log(per_unit.mean(dim=1) + LOG_EPS)
        return acc, (log_params - self.target_mean[1]) / self.target_std[1]

    def predict(self, z: Tensor) -> Prediction:
        """Predicted val accuracy and log params in real units."""
        acc, params = self.predict_standardised(z)
        mean, std = self.target_mean, self.target_std
        return Prediction(acc * std[0] + mean[0], params * std[1] + mean[1])

    def set_targets(self, data: CodecData) -> None:
        """Standardise the regression targets with the mean and spread of the ``ok`` samples of ``data``."""
        ok = data.ok
        if not bool(ok.any()):
            return
        targets = torch.stack([data.accuracy[ok], data.log_params[ok]], dim=1)  # (N_ok, 2)
        std = targets.std(dim=0, unbiased=False) if targets.shape[0] > 1 else torch.ones(2)
        self.target_mean.copy_(targets.mean(dim=0))
        self.target_std.copy_(std.clamp(min=STD_FLOOR))


def codec_loss(
    model: CodecModel, data: CodecData, static: Tensor, acc_weight: float = 1.0, params_weight: float = 1.0
) -> Losses:
    """``recon + acc_weight * mse(acc) + params_weight * mse(log params)`` over one batch.

    ``recon`` is the binary cross-entropy of the keep flags of removable units plus the cross-entropy of the
    ratio (and kernel) choice of units that have one, each a mean over its decisions.
    """
    z = model.encode(data.tokens)
    keep_logits, ratio_logits, kernel_logits = model.decode(z, static)
    recon = _choice_loss(keep_logits, ratio_logits, kernel_logits, data.choices)
    acc_hat, params_hat = model.predict_standardised(z)
    mean, std = model.target_mean, model.target_std
    ok = data.ok
    if bool(ok.any()):
        acc_mse = F.mse_loss(acc_hat[ok], (data.accuracy[ok] - mean[0]) / std[0])
        params_mse = F.mse_loss(params_hat[ok], (data.log_params[ok] - mean[1]) / std[1])
    else:
        acc_mse = params_mse = z.new_zeros(())
    total = recon + acc_weight * acc_mse + params_weight * params_mse
    return Losses(total, recon, acc_mse, params_mse)


def _choice_loss(keep: Tensor, ratio: Tensor, kernel: Tensor | None, choices: Choices) -> Tensor:
    """Reconstruction loss of the per-unit choices (units without a decision are masked out)."""
    removable = choices.removable
    loss = keep.new_zeros(())
    if bool(removable.any()):
        loss = loss + F.binary_cross_entropy_with_logits(keep[:, removable], choices.keep[:, removable])
    if bool((choices.ratio != NO_CHOICE).any()):
        loss = loss + F.cross_entropy(ratio.flatten(0, 1), choices.ratio.flatten(), ignore_index=NO_CHOICE)
    if kernel is not None and bool((choices.kernel != NO_CHOICE).any()):
        loss = loss + F.cross_entropy(kernel.flatten(0, 1), choices.kernel.flatten(), ignore_index=NO_CHOICE)
    return loss


def _batches(size: int, batch_size: int, generator: torch.Generator) -> Iterator[Tensor]:
    order = torch.randperm(size, generator=generator)
    for start in range(0, size, batch_size):
        yield order[start : start + batch_size]


def fit(
    model: CodecModel,
    data: CodecData,
    static: Tensor,
    epochs: int,
    *,
    lr: float = 3e-3,
    weight_decay: float = 1e-4,
    batch_size: int = 32,
    acc_weight: float = 1.0,
    params_weight: float = 1.0,
    generator: torch.Generator | None = None,
) -> dict[str, Any]:
    """Train ``model`` on ``data`` with Adam (cosine-decayed learning rate); returns the final full-data losses.

    The regression targets are re-standardised on ``data`` first, so calling it again after adding samples
    continues from the current weights (warm start) with targets on the new scale.
    """
    if len(data) == 0:
        raise ValueError("fit() needs at least one sample")
    generator = generator or torch.Generator().manual_seed(0)
    model.set_targets(data)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps = epochs * math.ceil(len(data) / batch_size)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * step / steps)))
    for _ in range(epochs):
        for index in _batches(len(data), batch_size, generator):
            losses = codec_loss(model, data.subset(index), static, acc_weight, params_weight)
            optimizer.zero_grad(set_to_none=True)
            losses.total.backward()
            optimizer.step()
            schedule.step()
    model.eval()
    with torch.no_grad():
        final = codec_loss(model, data, static, acc_weight, params_weight).as_dict()
    return final


@torch.no_grad()
def token_accuracy(model: CodecModel, data: CodecData, static: Tensor) -> float:
    """Share of tokens whose every decision (keep flag, ratio, kernel) the decoder's argmax gets right."""
    model.eval()
    keep, ratio, kernel = model.decode(model.encode(data.tokens), static)
    choices = data.choices
    right = torch.ones_like(choices.keep, dtype=torch.bool)  # (N, L)
    right &= ~choices.removable | ((keep > 0).float() == choices.keep)
    right &= (choices.ratio == NO_CHOICE) | (ratio.argmax(dim=-1) == choices.ratio)
    if kernel is not None:
        right &= (choices.kernel == NO_CHOICE) | (kernel.argmax(dim=-1) == choices.kernel)
    return float(right.float().mean())
