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

.PHONY: all build run test test-cpu-paths bench bench-kernels bench-step bench-collectives bench-gradients bench-cluster bench-accuracy bench-gpu clean

all: build

build:
	dotnet build BnDist.sln -c $(CONFIG)

run: build
	$(BNDIST) launch --workers $(WORKERS) $(RUN_ARGS)

# After the whole suite (widest instruction set), the CPU kernel tests run again on each narrower
# path the runtime can be switched to: AVX2+FMA, 128-bit vectors, scalar (src/Core/Backends/Cpu/CpuIsa.cs;
# CpuDispatchTests checks each run really took its path). About 10 s each. .NET 10 reads
# DOTNET_EnableAVX512 (it ignores the older DOTNET_EnableAVX512F); both are set, for either runtime.
# With them: the streaming stores of the shared-memory sums, and the promise on residual and
# Inception graphs (K ranks equal one process), which each path must keep with its own roundings.
CPU_PATH_FILTER := FullyQualifiedName~Backends.Cpu|FullyQualifiedName~Layers|FullyQualifiedName~Collectives.StreamingStores|FullyQualifiedName~InProcessGroupTests.K_ranks_equal_one_process_on_residual
CPU_PATH_SWITCHES := DOTNET_EnableAVX512=0,DOTNET_EnableAVX512F=0 DOTNET_EnableAVX2=0 DOTNET_EnableHWIntrinsic=0

test:
	dotnet test BnDist.sln -c $(CONFIG) --logger "console;verbosity=normal"
	@for switch in $(CPU_PATH_SWITCHES); do \
		echo "== CPU kernel tests with $$switch"; \
		env $${switch//,/ } dotnet test tests/Core.Tests -c $(CONFIG) --no-build --filter "$(CPU_PATH_FILTER)" || exit 1; \
	done

# The CPU kernel tests alone, on every instruction-set path (no other test project).
test-cpu-paths:
	dotnet build tests/Core.Tests -c $(CONFIG)
	@for switch in "" $(CPU_PATH_SWITCHES); do \
		echo "== CPU kernel tests $${switch:-with every instruction set}"; \
		env $${switch//,/ } dotnet test tests/Core.Tests -c $(CONFIG) --no-build --filter "$(CPU_PATH_FILTER)" || exit 1; \
	done

bench: bench-kernels bench-step bench-collectives bench-gradients bench-cluster

bench-kernels:
	dotnet run -c Release --project bench/Kernels

bench-step: build
	bash bench/step.sh

bench-collectives: build
	bash bench/collectives.sh

# Shared-memory gradients against Open MPI, round by round, labelled with the vCPUs' placement.
bench-gradients: build
	bash bench/gradients.sh

bench-cluster: build
	bash bench/cluster.sh

bench-accuracy: build
	bash bench/accuracy.sh

# On a machine with an NVIDIA GPU: the tests with CUDA, launch --device cuda, the step against
# PyTorch, from outputs built beforehand (bash bench/gpu.sh --bundle where the SDK is; see its header).
bench-gpu:
	bash bench/gpu.sh

clean:
	dotnet clean BnDist.sln -c $(CONFIG)
