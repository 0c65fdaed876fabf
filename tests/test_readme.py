"""The README's Python example runs as written (in a temporary directory)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def python_example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
    examples = [b for b in blocks if "archcompress.compress(" in b]
    assert len(examples) == 1, "the README has one Python example of compress()"
    return examples[0]


@pytest.mark.slow
def test_the_readme_python_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ARCHCOMPRESS_HOME", str(tmp_path / "home"))
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        exec(compile(python_example(), "README.md", "exec"), {})
    finally:
        torch.set_num_threads(before)
    assert (tmp_path / "runs" / "lenet-run" / "report.html").is_file()
    assert (tmp_path / "runs" / "lenet-run" / "student" / "model.onnx").is_file()
