# Two entry points for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# torch/torchvision are pinned here (not in pyproject) so that users can bring their own build.
TORCH  := torch==2.14.1 torchvision==0.29.1
DEMO   := runs/demo

.PHONY: venv demo demo-figures test lint typecheck pytest bench bench-vgg11 bench-small bench-resnet20 bench-l2 bench-quick \
	bench-mobilenet bench-fidelity gpu-check bench-parallel bench-transfer clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

# The demo's two commands; `make demo-figures` runs the same two (into another folder) and records their figures.
DEMO_TEACHER = $(BIN)/archcompress train-teacher --model vgg11 --model-arg width=0.5 --dataset mnist5k --epochs 8 \
	--seed 0 --out $(DEMO)/teacher.pt
DEMO_COMPRESS = $(BIN)/archcompress compress $(DEMO)/teacher.pt --method n2n --budget 20 --rollouts 5 --epochs 1 \
	--subset 600 --final-epochs 8 --target 10x --seed 0 --out $(DEMO)/run

demo: $(STAMP)
	rm -rf $(DEMO)
	$(DEMO_TEACHER)
	$(DEMO_COMPRESS)
	@echo ""
	@echo "Demo finished. Teacher: $(DEMO)/teacher.pt"
	@echo "Student: $(DEMO)/run/student (load with archcompress.load_student)"
	@echo "Report:  $(DEMO)/run/report.html (figures in report.json, curves in $(DEMO)/run/tb)"

# Runs the demo's commands in runs/demo-figures and writes benchmarks/results/demo.json (accuracies, params,
# compression, seconds, date, machine); tests/test_readme.py fails when README.md's demo figures differ from it.
demo-figures: $(STAMP)
	rm -rf runs/demo-figures
	$(BIN)/python benchmarks/demo_figures.py --run-dir runs/demo-figures --out benchmarks/results/demo.json \
		--teacher-command "$(subst $(DEMO),runs/demo-figures,$(DEMO_TEACHER))" \
		--compress-command "$(subst $(DEMO),runs/demo-figures,$(DEMO_COMPRESS))"

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

# one worker per CPU; each test file stays on one worker, so its module-scoped teachers are trained once
pytest: $(STAMP)
	$(BIN)/pytest -n auto --dist loadfile --durations=15

test: lint typecheck pytest

bench: $(STAMP) bench-vgg11 bench-small bench-resnet20 bench-mobilenet bench-fidelity bench-transfer
	$(BIN)/python benchmarks/space.py
	$(BIN)/python benchmarks/coverage.py
	$(BIN)/python benchmarks/evaluate.py
	$(BIN)/python benchmarks/n2n_vs_random.py

# [transfer]: N2N policies from VGG-11 to VGG-19 and from ResNet-20 to ResNet-56 on mnist5k, every adaptation
# variant beside from-scratch runs, 3 seeds, and the embedding method with and without the source's codec (runs are
# kept under ~/.cache/archcompress/bench/transfer; an interrupted benchmark continues where it stopped).
bench-transfer: $(STAMP)
	$(BIN)/python benchmarks/n2n_transfer.py --embedding

# Under 10 minutes: every method once on a LeNet-5 on digits at 10x and on the 1-D CNN on mnist1d at 100x, one
# seed, 30 evaluations; rewrites both tables in docs/benchmarks.md (runs are kept under ~/.cache/archcompress/bench:
# delete quick-lenet5-digits and quick-cnn1d-mnist1d there to redo them).
bench-quick: $(STAMP)
	$(BIN)/python benchmarks/quality.py --name quick-lenet5-digits --model lenet5 --dataset digits \
		--teacher-epochs 30 --methods n2n embedding random uniform prune --targets 10 --seeds 0 --budget 30 \
		--ratios 0.1,0.25,0.5,0.75,1 --min-channels 2 --final-epochs 30
	$(BIN)/python benchmarks/quality.py --name quick-cnn1d-mnist1d --model cnn1d --dataset mnist1d \
		--teacher-epochs 30 --methods n2n embedding random uniform prune --targets 100 --seeds 0 --budget 30 \
		--epochs 1 --final-epochs 30

# The [fidelity] quality benchmarks: N2N, the embedding method and pruning, three seeds, 100 evaluations, with the
# defaults since multi-fidelity evaluation (rungs after 1, 3 and 9 epochs, hidden linear layers removable, N2N's
# stage-2 proposals fitted to the parameter limit, Hinton KD for the chosen student). The one-fidelity tables
# before them are kept in benchmarks/results/quality-*-one-fidelity.json; `make bench-l2` gives the same tables
# with the L2 final distillation they were first measured with (quality-*-l2.json).
RUNGS := $(BIN)/python benchmarks/quality.py --seeds 0 1 2 --budget 100 --methods n2n embedding prune --rungs 1,3,9 \
	--fit-to-limit --final-loss kd
ALL_KINDS := block,body,max-pool,gate,dense-layer,linear
CNN1D_300 := --model cnn1d --dataset mnist1d --teacher-epochs 30 --epochs 1 --final-epochs 100 --targets 300 \
	--removable block,body,linear
LENET5_50 := --model lenet5 --dataset digits --teacher-epochs 30 --epochs 3 --final-epochs 100 --targets 50 \
	--removable $(ALL_KINDS)
RESNET20_100 := --model resnet20 --dataset mnist5k --teacher-epochs 8 --final-epochs 15 --targets 100 \
	--removable $(ALL_KINDS)
VGG11_500 := --model vgg11 --dataset mnist5k --teacher-epochs 8 --final-epochs 15 --targets 500 --removable $(ALL_KINDS)
bench-small: $(STAMP)
	$(RUNGS) --name cnn1d-mnist1d $(CNN1D_300)
	$(RUNGS) --name lenet5-digits $(LENET5_50)

# ResNet-20 on mnist5k at 100x (hours on 2 cores).
bench-resnet20: $(STAMP)
	$(RUNGS) --name resnet20-mnist5k $(RESNET20_100)

# torchvision's MobileNetV3-small (SE gates, hardswish, a hidden linear) on mnist5k at 10x and 50x: N2N, the
# embedding method, pruning, uniform width and random search, 50 evaluations each (83 min of run time summed).
MOBILENETV3 := --model torchvision:mobilenet_v3_small --dataset mnist5k --teacher-epochs 8 --final-epochs 15 \
	--targets 10 50 --removable $(ALL_KINDS)
bench-mobilenet: $(STAMP)
	$(RUNGS) --budget 50 --methods n2n embedding prune uniform random --threads 1 --name mobilenetv3-mnist5k $(MOBILENETV3)

# The four [fidelity] tables with the L2 final distillation (the default before --final-loss kd).
bench-l2: $(STAMP)
	$(RUNGS) --final-loss l2 --name cnn1d-mnist1d-l2 $(CNN1D_300)
	$(RUNGS) --final-loss l2 --name lenet5-digits-l2 $(LENET5_50)
	$(RUNGS) --final-loss l2 --name resnet20-mnist5k-l2 $(RESNET20_100)
	$(RUNGS) --final-loss l2 --name vgg11-mnist5k-high-l2 $(VGG11_500)

# Every method on a full-width VGG-11 teacher on mnist5k, 100 evaluations, three seeds (hours on 2 cores), with the
# one-fidelity settings they were measured with; then the [fidelity] table at 500x with the new defaults on a second
# teacher (vgg11-mnist5k-high). Finished runs are kept under ~/.cache/archcompress/bench and not repeated.
VGG := $(BIN)/python benchmarks/quality.py --name vgg11-mnist5k --seeds 0 1 2
bench-vgg11: $(STAMP)
	$(VGG) --methods n2n prune n2n-paper --targets 100
	$(VGG) --methods n2n prune --targets 200 500
	$(VGG) --methods embedding random uniform --targets 100
	$(RUNGS) --name vgg11-mnist5k-high $(VGG11_500)
	$(BIN)/python benchmarks/embedding.py

# On a machine with one GPU, at most ~8 minutes: the CUDA path, GPU vs CPU distillation throughput, candidates per
# minute with 1, 2, 4, 8 candidates sharing the GPU, and one end-to-end compress; writes benchmarks/results/gpu.json.
gpu-check: $(STAMP)
	$(BIN)/python benchmarks/gpu_check.py --device cuda --out benchmarks/results/gpu.json

# On the CPU: one N2N search of 60 evaluations (1-D CNN, mnist1d, 300x) with inline, process and ray (2 workers),
# and one epoch of a tiny and a large student at 1 and 2 threads; writes benchmarks/results/parallel.json.
bench-parallel: $(STAMP)
	$(BIN)/python benchmarks/parallel.py

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache

# How well cheap proxies rank small students (Kendall tau against the final test accuracy), on two teachers:
# 476 s for the 1-D CNN and 876 s for ResNet-20 on 2 shared cores (2026-12-04).
bench-fidelity: $(STAMP)
	$(BIN)/python benchmarks/fidelity.py --name cnn1d-mnist1d --model cnn1d --dataset mnist1d \
		--removable block,body,max-pool,linear --min-ratio 250 --max-ratio 400
	$(BIN)/python benchmarks/fidelity.py --name resnet20-mnist5k --model resnet20 --dataset mnist5k --teacher-epochs 8 \
		--candidates 16 --final-epochs 15 --snapshots 1,2,3,5,10 --short 1,3,10 --min-ratio 80 --max-ratio 130
	$(BIN)/python benchmarks/quality.py --name cnn1d-mnist1d-linear --model cnn1d --dataset mnist1d --teacher-epochs 30 \
		--epochs 1 --final-epochs 100 --budget 100 --targets 300 --removable block,body,linear \
		--methods prune n2n n2n-finalists --seeds 0 1 2
