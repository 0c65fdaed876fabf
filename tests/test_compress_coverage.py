"""End to end on the operations beyond chains of convs: user models with SE gates inside residual blocks,
DenseNet-style concatenation and ConvNeXt-style permute + LayerNorm blocks, written in a user's file, train
as teachers, compress with the CLI, and their students reload with ``load_student``."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from typer.testing import CliRunner

from archcompress.api import train_teacher
from archcompress.checkpoint import load_teacher
from archcompress.cli import app
from archcompress.data import DataOptions
from archcompress.distill import TrainConfig
from archcompress.runtime import torch_threads
from archcompress.space import load_student

TINY = ["--budget", "3", "--epochs", "1", "--subset", "200", "--final-epochs", "1", "--device", "cpu"]

USER_MODELS = '''
    import torch
    import torch.nn.functional as F
    from torch import nn


    class SE(nn.Module):
        def __init__(self, channels, hidden):
            super().__init__()
            self.reduce = nn.Conv2d(channels, hidden, 1)
            self.expand = nn.Conv2d(hidden, channels, 1)

        def forward(self, x):
            return x * torch.sigmoid(self.expand(F.relu(self.reduce(F.adaptive_avg_pool2d(x, 1)))))


    class SENet(nn.Module):
        """Inverted residuals with squeeze-and-excitation inside the residual body."""

        def __init__(self, in_channels, num_classes):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(in_channels, 16, 3, padding=1), nn.BatchNorm2d(16), nn.Hardswish())
            self.blocks = nn.ModuleList(
                nn.Sequential(
                    nn.Conv2d(16, 48, 1), nn.BatchNorm2d(48), nn.SiLU(),
                    nn.Conv2d(48, 48, 3, padding=1, groups=48), nn.BatchNorm2d(48), nn.SiLU(),
                    SE(48, 12), nn.Conv2d(48, 16, 1), nn.BatchNorm2d(16),
                )
                for _ in range(2)
            )
            self.fc = nn.Linear(16, num_classes)

        def forward(self, x):
            x = self.stem(x)
            for block in self.blocks:
                x = x + block(x)
            return self.fc(x.mean([2, 3]))


    class DenseNet(nn.Module):
        """A dense block that keeps a list of features and concatenates them for every layer."""

        def __init__(self, in_channels, num_classes):
            super().__init__()
            self.stem = nn.Conv2d(in_channels, 16, 3, padding=1)
            self.layers = nn.ModuleList(
                nn.Sequential(nn.BatchNorm2d(16 + 12 * i), nn.ReLU(), nn.Conv2d(16 + 12 * i, 12, 3, padding=1))
                for i in range(3)
            )
            self.norm = nn.BatchNorm2d(52)
            self.fc = nn.Linear(52, num_classes)

        def forward(self, x):
            features = [self.stem(x)]
            for layer in self.layers:
                features.append(layer(torch.cat(features, 1)))
            x = F.relu(self.norm(torch.cat(features, 1)))
            return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


    class Block(nn.Module):
        def __init__(self, dim):
            super().__init__()
            self.dw = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
            self.norm = nn.LayerNorm(dim)
            self.fc1 = nn.Linear(dim, 4 * dim)
            self.fc2 = nn.Linear(4 * dim, dim)
            self.gamma = nn.Parameter(torch.full((dim,), 0.5))

        def forward(self, x):
            y = self.norm(self.dw(x).permute(0, 2, 3, 1))
            y = self.gamma * self.fc2(F.gelu(self.fc1(y)))
            return x + y.permute(0, 3, 1, 2)


    class ConvNeXt(nn.Module):
        """ConvNeXt-style blocks: permute to channels-last, LayerNorm, Linear, layer scale."""

        def __init__(self, in_channels, num_classes):
            super().__init__()
            self.stem = nn.Conv2d(in_channels, 24, 2, stride=2)
            self.blocks = nn.Sequential(Block(24), Block(24))
            self.norm = nn.LayerNorm(24)
            self.fc = nn.Linear(24, num_classes)

        def forward(self, x):
            return self.fc(self.norm(self.blocks(self.stem(x)).mean([-2, -1])))


    def torchvision_densenet(in_channels, num_classes):
        """torchvision's DenseNet class, narrowed to three dense blocks so that 28x28 inputs fit."""
        import torchvision

        model = torchvision.models.DenseNet(12, (2, 2, 2), 16, num_classes=num_classes)
        model.features.conv0 = nn.Conv2d(in_channels, 16, 7, stride=2, padding=3, bias=False)
        return model


    class Branchy(nn.Module):
        def __init__(self, in_channels, num_classes):
            super().__init__()
            self.conv = nn.Conv2d(in_channels, 8, 3, padding=1)
            self.fc = nn.Linear(8 * 64, num_classes)

        def forward(self, x):
            x = self.conv(x)
            if x.sum() > 0:
                x = F.relu(x)
            return self.fc(x.flatten(1))
'''


@pytest.fixture(scope="module")
def models_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("user") / "coverage_models.py"
    path.write_text(textwrap.dedent(USER_MODELS))
    return path


@pytest.fixture(autouse=True)
def one_thread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("ARCHCOMPRESS_HOME", str(tmp_path / "home"))
    with torch_threads(1):
        yield


@pytest.mark.slow
@pytest.mark.parametrize("factory", ["SENet", "DenseNet", "ConvNeXt"])
def test_user_model_trains_compresses_and_reloads(models_file: Path, tmp_path: Path, factory: str) -> None:
    teacher = tmp_path / "teacher.pt"
    train_teacher(f"{models_file}:{factory}", "digits", teacher, train=TrainConfig(epochs=2), device="cpu")
    out = tmp_path / "run"
    result = CliRunner().invoke(
        app, ["compress", str(teacher), "--out", str(out), "--method", "random", "--target", "2x", *TINY]
    )
    assert result.exit_code == 0, (result.output, result.exception)
    student = load_student(out / "student")
    arch = json.loads((out / "student" / "arch.json").read_text())
    assert arch["params"] == sum(p.numel() for p in student.parameters()) < load_teacher(teacher).meta.params
    x = torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        logits = student(x)
    assert logits.shape == (4, 10) and torch.isfinite(logits).all()


def test_data_dependent_branch_is_refused_in_one_line_with_exit_2(models_file: Path) -> None:
    result = CliRunner().invoke(
        app, ["inspect", f"{models_file}:Branchy", "--input-shape", "1,8,8", "--num-classes", "10"]
    )
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "torch.fx cannot trace" in lines[0] and "if x.sum() > 0:" in lines[0]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("ref", "kwargs"),
    [
        ("torchvision:mobilenet_v3_small", {"width_mult": 0.25}),  # SE gates inside inverted residuals
        ("torchvision:efficientnet_b0", {}),  # SE, SiLU, stochastic depth
        # DenseNet-121's 4 blocks need 32x32 inputs: torchvision's DenseNet class with 3 blocks
        ("{models_file}:torchvision_densenet", {}),
    ],
)
def test_torchvision_teacher_compresses_on_mnist5k(
    models_file: Path, tmp_path: Path, ref: str, kwargs: dict[str, float]
) -> None:
    ref = ref.format(models_file=models_file)
    teacher = tmp_path / "teacher.pt"
    train = TrainConfig(epochs=1, max_steps=5, augment=False)  # a teacher for the pipeline, not for accuracy
    train_teacher(ref, "mnist5k", teacher, model_kwargs=kwargs, train=train, device="cpu")
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["compress", str(teacher), "--out", str(out), "--target", "4x", *TINY])
    assert result.exit_code == 0, (result.output, result.exception)
    student = load_student(out / "student")
    arch = json.loads((out / "student" / "arch.json").read_text())
    assert arch["params"] == sum(p.numel() for p in student.parameters()) < load_teacher(teacher).meta.params
    with torch.no_grad():
        logits = student(torch.randn(2, 1, 28, 28))
    assert logits.shape == (2, 10) and torch.isfinite(logits).all()


def write_image_folder(root: Path, classes: int, per_class: int, size: int) -> None:
    """``root/train/<class>/*.png``: RGB images of ``size`` pixels whose colour tells the class (learnable)."""
    rng = np.random.default_rng(0)
    for label in range(classes):
        folder = root / "train" / f"class{label}"
        folder.mkdir(parents=True)
        for index in range(per_class):
            pixels = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
            pixels[..., label % 3] += np.uint8(40 * (1 + label // 3))
            Image.fromarray(pixels, "RGB").save(folder / f"{index:03d}.png")


@pytest.mark.slow
def test_densenet121_on_32px_images_compresses_with_the_teachers_image_size(tmp_path: Path) -> None:
    """DenseNet-121 needs at least 32x32 inputs: an image folder at --image-size 32. compress takes the image size
    (and val fraction) the teacher was trained with, without being told."""
    root = tmp_path / "images"
    write_image_folder(root, classes=4, per_class=25, size=40)
    teacher = tmp_path / "teacher.pt"
    train = TrainConfig(epochs=1, max_steps=3, augment=False, batch_size=16)
    data = DataOptions(image_size=32, val_fraction=0.2)
    train_teacher("torchvision:densenet121", f"imagefolder:{root}", teacher, data=data, train=train, device="cpu")
    assert load_teacher(teacher).meta.input_shape == (3, 32, 32)
    out = tmp_path / "run"
    tiny = [*TINY, "--subset", "40", "--final-epochs", "1"]
    result = CliRunner().invoke(app, ["compress", str(teacher), "--out", str(out), "--target", "4x", *tiny])
    assert result.exit_code == 0, (result.output, result.exception)
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["data"]["image_size"] == 32 and config["data"]["val_fraction"] == 0.2
    student = load_student(out / "student")
    with torch.no_grad():
        logits = student(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 4) and torch.isfinite(logits).all()
