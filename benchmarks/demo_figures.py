"""The demo's figures, measured: run the two commands of ``make demo`` and record what they produced.

``make demo-figures`` passes the Makefile's own demo commands (pointed at ``runs/demo-figures``), so this measures
exactly what a user's ``make demo`` runs. Each command is timed; the figures are read back from the teacher
checkpoint and the run's ``report.json`` and written to ``benchmarks/results/demo.json``. The README quotes them,
and ``tests/test_readme.py`` fails when a figure quoted there differs from this file: after a change that moves
the demo's figures, run ``make demo-figures`` and update the README's demo sentences from its output.

    make demo-figures
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

import archcompress


def run_timed(command: str) -> float:
    """Run one shell-free command line, streaming its output; its wall seconds. Exits if it fails."""
    print(f"$ {command}", flush=True)
    started = time.perf_counter()
    completed = subprocess.run(shlex.split(command), check=False)
    seconds = time.perf_counter() - started
    if completed.returncode != 0:
        sys.exit(f"the demo command failed with exit code {completed.returncode}: {command}")
    return seconds


def figures(teacher_path: Path, run_dir: Path, teacher_seconds: float, compress_seconds: float) -> dict[str, Any]:
    """The demo's figures from its teacher checkpoint and its run's report.json."""
    meta = archcompress.load_teacher(teacher_path).meta
    report = json.loads((run_dir / "report.json").read_text())
    return {
        "teacher": {
            "model": meta.model,
            "model_kwargs": meta.model_kwargs,
            "dataset": meta.dataset,
            "params": meta.params,
            "test_accuracy": meta.test_accuracy,
            "val_accuracy": meta.val_accuracy,
            "seconds": teacher_seconds,
        },
        "student": {
            "params": report["student"]["params"],
            "macs": report["student"]["macs"],
            "test_accuracy": report["student"]["test_accuracy"],
        },
        "compression": {"params": report["compression"]["params"], "macs": report["compression"]["macs"]},
        "method": report["method"],
        "target_met": report["target"]["met"],
        "compress_seconds": compress_seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", type=Path, required=True, help="folder for the teacher and the run (new)")
    parser.add_argument("--teacher-command", required=True, help="the demo's train-teacher command line")
    parser.add_argument("--compress-command", required=True, help="the demo's compress command line")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "demo.json")
    args = parser.parse_args()
    teacher_path = args.run_dir / "teacher.pt"
    run_dir = args.run_dir / "run"
    for command, path in ((args.teacher_command, teacher_path), (args.compress_command, run_dir)):
        if str(path) not in command:
            sys.exit(f"expected the command to write {path}: {command}")
    if args.run_dir.exists():
        sys.exit(f"{args.run_dir} exists: remove it first (make demo-figures does)")
    teacher_seconds = run_timed(args.teacher_command)
    compress_seconds = run_timed(args.compress_command)
    record = {
        "question": "what does `make demo` produce (figures quoted in README.md)?",
        "commands": [args.teacher_command, args.compress_command],
        **figures(teacher_path, run_dir, teacher_seconds, compress_seconds),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "torch": str(torch.__version__),
            "archcompress": archcompress.__version__,
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps(record, indent=1))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
