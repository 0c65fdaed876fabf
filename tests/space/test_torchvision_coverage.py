"""Every torchvision classification model: imported, built and counted exactly, or refused in one line.

Like Torch-Pruning's torchvision sweep: each model (random init, 10 classes, a small input) is imported into
a space; the full-width student must reproduce the teacher's logits and a half-width student must run with
exactly the analytic parameter and MAC counts. The models in ``REFUSED`` must be refused with our error type
(never a crash); a model that starts working fails here until it is moved out of ``REFUSED``.
"""

from __future__ import annotations

import pytest
import torch

from archcompress.errors import ArchcompressError
from archcompress.models import create_model
from archcompress.models.references import torchvision_classifiers
from archcompress.runtime import torch_threads
from archcompress.space import CompressionSpace, count_params, measure_macs

SKIPPED = {"vit_h_14", "regnet_y_128gf"}  # too large to build on a CI runner
# attention: windows on channels-last features (Swin), patch reshape (ViT, MaxViT)
REFUSED = {
    *(f"swin_{s}" for s in ("t", "s", "b", "v2_t", "v2_s", "v2_b")),
    *(f"vit_{s}" for s in ("b_16", "b_32", "l_16", "l_32")),
    "maxvit_t",
}
MODELS = [n for n in torchvision_classifiers() if n not in SKIPPED]
MIN_SUPPORTED = 67  # measured: benchmarks/coverage.py, docs/benchmarks.md


def _input_shape(name: str) -> tuple[int, int, int]:
    if name == "inception_v3":
        return (3, 299, 299)
    if name.startswith(("vit_", "maxvit", "swin")):
        return (3, 224, 224)  # these fix (or assume) their input size
    return (3, 96, 96)


def test_the_sweep_covers_torchvision() -> None:
    assert len(MODELS) == 78 and set(MODELS) >= REFUSED
    assert len(MODELS) - len(REFUSED) >= MIN_SUPPORTED


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:The default weight initialization:FutureWarning")
@pytest.mark.parametrize("name", MODELS)
def test_torchvision_model(name: str) -> None:
    shape = _input_shape(name)
    with torch_threads(1), torch.no_grad():
        torch.manual_seed(0)
        teacher = create_model(f"torchvision:{name}", shape, 10).eval()
        if name in REFUSED:
            with pytest.raises(ArchcompressError) as info:
                CompressionSpace.from_model(teacher, shape)
            assert "\n" not in str(info.value) and "is not supported" in str(info.value)
            return
        space = CompressionSpace.from_model(teacher, shape)
        x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(0))
        full = space.build(space.teacher_candidate())
        # GoogLeNet and Inception-V3 hold auxiliary classifiers that their eval forward does not use
        assert full.fresh == 0 and full.params == count_params(full.module) == space.teacher_cost.params
        assert space.teacher_cost.params <= count_params(teacher)
        torch.testing.assert_close(full.module.eval()(x), teacher(x), rtol=1e-4, atol=1e-4)
        del full
        half = space.build(space.uniform_candidate(0.5))
        assert half.module.eval()(x).shape == (2, 10)
        assert half.params == count_params(half.module) < space.teacher_cost.params
        assert half.macs == measure_macs(half.module, shape)
