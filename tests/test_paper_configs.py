"""configs/*.yaml and benchmarks/paper.py: every paper config is valid, the dry run prices one, bad configs fail in
one line, and the real run trains and compresses end to end (on an offline set, at toy scale)."""

from __future__ import annotations

import importlib.util
import math
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import torch
import yaml

from archcompress.config import CompressConfig
from archcompress.data import DataOptions, dataset_sources
from archcompress.errors import ArchcompressError
from archcompress.models import create_model, zoo_entry
from archcompress.runtime import torch_threads

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))
SMALL = ROOT / "configs" / "fashion-mnist-vgg11-n2n.yaml"


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("paper_benchmark", ROOT / "benchmarks" / "paper.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module


paper = _load_script()


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """One torch thread: the dry run's timings must not compete with other work on a small machine."""
    with torch_threads(1):
        yield


def write_config(path: Path, teacher: dict[str, object], compress: dict[str, object]) -> Path:
    path.write_text(yaml.safe_dump({"teacher": teacher, "compress": compress}, sort_keys=False))
    return path


def small_sections() -> tuple[dict[str, object], dict[str, object]]:
    raw = yaml.safe_load(SMALL.read_text())
    return raw["teacher"], raw["compress"]


# --- every config -----------------------------------------------------------------------------------------


def test_the_paper_settings_are_all_there() -> None:
    names = {path.name for path in CONFIGS}
    assert {
        "cifar10-resnet34-n2n.yaml",
        "cifar10-vgg19-n2n.yaml",
        "cifar100-resnet18-n2n.yaml",
        "svhn-resnet18-n2n.yaml",
        "fashion-mnist-vgg11-n2n.yaml",
        "cifar10-resnet34-embedding.yaml",
    } <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_is_a_valid_compress_config_with_a_real_teacher(path: Path, tmp_path: Path) -> None:
    config = paper.load_config(path)
    compress = config.compress
    assert isinstance(compress, CompressConfig)
    compress.validate()
    assert (compress.teacher, compress.out) == (paper.PLACEHOLDER_TEACHER, paper.PLACEHOLDER_OUT)
    assert compress.dataset == config.teacher.dataset
    # the run directory's config.yaml is written from this object: it must read back unchanged
    (tmp_path / "config.yaml").write_text(compress.to_yaml())
    assert CompressConfig.from_yaml(tmp_path / "config.yaml") == compress

    teacher = config.teacher
    assert zoo_entry(teacher.model).name == teacher.model
    assert teacher.dataset in {source.name for source in dataset_sources()}
    teacher.train.validate()
    assert teacher.train.epochs >= 10 and teacher.device == "cuda"
    # the N2N code's per-candidate budget: fresh init, 5 epochs of Adam 5e-4 with wd 5e-4, constant lr, L2 logits
    budget = compress.candidate
    assert (budget.epochs, budget.init, budget.optimizer, budget.schedule, budget.loss) == (
        5,
        "scratch",
        "adam",
        "none",
        "l2",
    )
    assert budget.lr == pytest.approx(5e-4) and budget.weight_decay == pytest.approx(5e-4)
    assert 100 <= compress.budget <= 1000
    info = paper.KNOWN_SETS[teacher.dataset].info
    model = create_model(teacher.model, info.input_shape, info.num_classes, teacher.model_kwargs)
    assert model(torch.zeros(2, *info.input_shape)).shape == (2, info.num_classes)


def test_readme_documents_every_config() -> None:
    readme = (ROOT / "configs" / "README.md").read_text()
    for path in CONFIGS:
        assert path.name in readme, path.name
    assert "reported by the paper, not measured here" in readme.lower()


# --- the dry run ------------------------------------------------------------------------------------------


def test_dry_run_of_the_small_config_prices_every_stage_on_cpu() -> None:
    config = paper.load_config(SMALL)
    run = paper.dry_run(config, data_root=None, device="cpu")

    assert run.device == "cpu" and not run.data.real
    assert (run.data.train, run.data.val, run.data.test) == (54_000, 6_000, 10_000)  # official sizes, 10% val
    teacher = create_model("vgg11", (1, 28, 28), 10)
    assert run.teacher_params == sum(p.numel() for p in teacher.parameters())
    assert len(run.students) == paper.STUDENTS
    assert all(0 < s.params < run.teacher_params for s in run.students)
    assert run.candidate_steps == 5 * math.ceil(54_000 / 64)  # 5 epochs at the configured batch of 64
    for student in run.students:
        timing = student.timing
        assert timing.batch == 64 and 2 <= timing.timed_batch <= 64
        assert timing.step_seconds > 0 and timing.forward_seconds_per_sample > 0
        expected = student.build_seconds + run.candidate_steps * timing.step_seconds
        expected += 6_000 * timing.forward_seconds_per_sample
        assert student.candidate_seconds == pytest.approx(expected)
    assert run.search_seconds == pytest.approx(config.compress.budget * run.candidate_seconds)
    assert run.teacher_seconds > 60 * math.ceil(54_000 / 128) * run.teacher_timing.step_seconds * 0.99
    assert run.total_seconds > run.search_seconds > 0

    text = paper.format_dry_run(run)
    for line in (
        "valid",
        "no --data-root given",
        "timing used synthetic batches",
        "cpu",
        "random student 3",
        "teacher training   60 epochs x 422 steps",
        "per candidate      4,220 steps",
        "search             500 evaluations",
        "final distillation",
        "total",
    ):
        assert line in text, line


def test_describe_data_says_when_the_files_are_missing(tmp_path: Path) -> None:
    shape = paper.describe_data("cifar10", DataOptions(data_root=tmp_path))
    assert not shape.real and "not found under --data-root" in shape.note
    assert shape.info.input_shape == (3, 32, 32) and (shape.train, shape.val, shape.test) == (45_000, 5_000, 10_000)


# --- broken configs ---------------------------------------------------------------------------------------


def _mutated(tmp_path: Path, teacher_changes: dict[str, object], compress_changes: dict[str, object]) -> Path:
    teacher, compress = small_sections()
    return write_config(tmp_path / "broken.yaml", {**teacher, **teacher_changes}, {**compress, **compress_changes})


@pytest.mark.parametrize(
    ("teacher_changes", "compress_changes", "words"),
    [
        ({"model": "vgg111"}, {}, ["unknown model 'vgg111'", "vgg11"]),
        ({"dataset": "fashion-mnst"}, {}, ["unknown data set 'fashion-mnst'", "fashion-mnist"]),
        ({"epochs": 0}, {}, ["--epochs must be at least 1"]),
        ({"lr_decay": 0.1}, {}, ["teacher: unknown setting(s) lr_decay", "model_kwargs"]),
        ({}, {"budgt": 10}, ["compress: unknown setting(s) budgt"]),
        ({}, {"budget": 0}, ["--budget must be at least 1"]),
        ({}, {"candidate": {"lr": "5e-4"}}, ["setting lr must be float", "write 1.0e-3"]),
        ({}, {"teacher": "t.pt"}, ["remove teacher:"]),
        ({}, {"dataset": "cifar10"}, ["differs from the teacher's 'fashion-mnist'"]),
        ({}, {"device": "tpu"}, ["device must be auto, cpu, cuda"]),
    ],
)
def test_a_broken_config_gives_one_clear_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    teacher_changes: dict[str, object],
    compress_changes: dict[str, object],
    words: list[str],
) -> None:
    path = _mutated(tmp_path, teacher_changes, compress_changes)
    with pytest.raises(ArchcompressError):
        paper.load_config(path)
    assert paper.main([str(path), "--dry-run", "--device", "cpu"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    for word in words:
        assert word in lines[0], lines[0]


def test_a_config_without_both_sections_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "half.yaml"
    path.write_text(yaml.safe_dump({"teacher": small_sections()[0]}))
    assert paper.main([str(path), "--dry-run"]) == 2
    assert "exactly two sections, teacher: and compress:" in capsys.readouterr().err


def test_a_target_the_space_cannot_reach_is_refused_before_any_timing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _mutated(tmp_path, {}, {"target": 5000.0})
    assert paper.main([str(path), "--dry-run", "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "5000x is out of reach" in err and "\n" not in err


# --- the real run, at toy scale ---------------------------------------------------------------------------


def test_run_trains_the_teacher_once_and_compresses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ARCHCOMPRESS_HOME", str(tmp_path / "home"))
    teacher = {"model": "lenet5", "dataset": "digits", "device": "cpu", "epochs": 2, "augment": False}
    compress = {
        "method": "random",
        "budget": 2,
        "final_epochs": 1,
        "device": "cpu",
        "candidate": {"epochs": 1, "subset": 200, "batch_size": 64},
    }
    path = write_config(tmp_path / "toy.yaml", teacher, compress)
    out = tmp_path / "out"
    assert paper.main([str(path), "--out", str(out)]) == 0
    assert (out / "teacher.pt").is_file() and (out / "random" / "report.json").is_file()
    assert (out / "paper-random.yaml").read_text() == path.read_text()
    first = capsys.readouterr().out
    assert "training lenet5 on digits" in first and "student: test accuracy" in first

    # a second call keeps the teacher and the finished run
    stamp = (out / "teacher.pt").stat().st_mtime_ns
    assert paper.main([str(path), "--out", str(out)]) == 0
    second = capsys.readouterr().out
    assert "exists, not training it again" in second and "is finished already" in second
    assert (out / "teacher.pt").stat().st_mtime_ns == stamp

    # a checkpoint from another teacher section is refused
    other = write_config(tmp_path / "other.yaml", {**teacher, "model": "mlp"}, compress)
    assert paper.main([str(other), "--out", str(out)]) == 2
    assert "not this config's teacher" in capsys.readouterr().err
    assert (out / "paper-random.yaml").read_text() == path.read_text()  # nothing in ``out`` was touched
