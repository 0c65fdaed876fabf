"""timm models (``timm:NAME``, random init): one small model per family imports, builds and counts exactly.

``benchmarks/coverage.py`` sweeps every model of these families; this keeps one of each in every test run.
"""

from __future__ import annotations

import pytest
import torch

from archcompress.models import create_model
from archcompress.runtime import torch_threads
from archcompress.space import CompressionSpace, count_params, measure_macs

pytest.importorskip("timm")

# timm's BatchNormAct2d (F.batch_norm on its own tensors), F.linear, SE gates, LayerNorm2d and layer scale
FAMILIES = ["resnet18", "efficientnet_b0", "mobilenetv3_small_100", "regnety_002", "convnext_atto", "densenet121"]


@pytest.mark.parametrize("name", FAMILIES)
def test_timm_model(name: str) -> None:
    shape = (3, 64, 64)
    with torch_threads(1), torch.no_grad():
        torch.manual_seed(0)
        teacher = create_model(f"timm:{name}", shape, 10).eval()
        space = CompressionSpace.from_model(teacher, shape)
        x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(0))
        full = space.build(space.teacher_candidate())
        assert full.fresh == 0 and full.params == count_params(teacher) == space.teacher_cost.params
        torch.testing.assert_close(full.module.eval()(x), teacher(x), rtol=1e-4, atol=1e-4)
        half = space.build(space.uniform_candidate(0.5))
        assert half.module.eval()(x).shape == (2, 10)
        assert half.params == count_params(half.module) < space.teacher_cost.params
        assert half.macs == measure_macs(half.module, shape)
        sample = space.build(space.sample(0))
        assert sample.params == count_params(sample.module) and sample.macs == measure_macs(sample.module, shape)
