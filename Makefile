# BnDist — the two commands of the README are `make run` and `make test`.
SHELL := /bin/bash
export DOTNET_CLI_TELEMETRY_OPTOUT := 1
export DOTNET_NOLOGO := 1
export DOTNET_SKIP_FIRST_TIME_EXPERIENCE := 1

CONFIG ?= Release
BNDIST := src/Cli/bin/$(CONFIG)/net10.0/bndist
# `make run` launches a local cluster of $(WORKERS) worker processes (synchronized BN) with
# the recipe of the foundation issue: convnet, 4 epochs, global batch 128, lr 0.05 cosine,
# momentum 0.9, weight decay 5e-4, on the embedded Fashion-MNIST subset.
WORKERS ?= 2
RUN_ARGS ?= --model convnet --epochs 4 --batch-size 128 --lr 0.05 --lr-schedule cosine --momentum 0.9 --weight-decay 5e-4

.PHONY: all build run test bench bench-kernels bench-step bench-collectives bench-accuracy bench-gpu clean

all: build

build:
	dotnet build BnDist.sln -c $(CONFIG)

run: build
	$(BNDIST) launch --workers $(WORKERS) $(RUN_ARGS)

test:
	dotnet test BnDist.sln -c $(CONFIG) --logger "console;verbosity=normal"

bench: bench-kernels bench-step bench-collectives

bench-kernels:
	dotnet run -c Release --project bench/Kernels

bench-step: build
	bash bench/step.sh

bench-collectives: build
	bash bench/collectives.sh

bench-accuracy: build
	bash bench/accuracy.sh

# On a machine with an NVIDIA GPU: the tests with CUDA, launch --device cuda, the step against
# PyTorch, from outputs built beforehand (bash bench/gpu.sh --bundle where the SDK is; see its header).
bench-gpu:
	bash bench/gpu.sh

clean:
	dotnet clean BnDist.sln -c $(CONFIG)
