#!/usr/bin/env bash
# bench/accuracy-resnet.sh: issue 12 item 8, resnet20 on the full Fashion-MNIST, BnDist against
# PyTorch with one recipe; prints both per-epoch test-accuracy curves side by side.
#
# The recipe (each knob below can be overridden from the environment):
#   resnet20, EPOCHS=5, batch 128, SGD lr 0.1 momentum 0.9 weight decay 5e-4, cosine schedule
#   per step (lr·(1 + cos(π·t/T))/2), augmentation crop:4,flip: pad 4 zeros AFTER normalization
#   (the border is the mean pixel), random 28×28 crop, horizontal flip p=0.5, per sample
#   (bench/peers/torch_augment.py on the PyTorch side), 2 threads, the short last batch kept.
#   SAME_INIT=1: BnDist saves its initial weights (--save-init) and PyTorch starts from them, so
#   the curves differ by the implementations and the random draws (shuffle, crops, flips), not
#   by the initialization; SAME_INIT=0 gives each side its own (torch_resnet.py: torchvision's).
#
# The BnDist command it runs is
#   bndist train --model resnet20 --data DATA --augment crop:4,flip --epochs 5 --batch-size 128
#       --lr 0.1 --momentum 0.9 --weight-decay 5e-4 --lr-schedule cosine --threads 2
#       --keep-last-batch --seed 0 --save-init OUT/init.safetensors --metrics-out OUT/bndist.jsonl
#
# Run from anywhere:  bench/accuracy-resnet.sh
# Smoke:              DATA=/tmp/tiny EPOCHS=1 bench/accuracy-resnet.sh   (a few hundred samples)
# Other knobs as bench/accuracy.sh (ONLY=torch needs SAME_INIT=0). PyTorch takes ~0.2 s per
# step of 128 on 2 cores (469 steps an epoch), so ~2 min an epoch with its evaluation.
set -euo pipefail
export MODEL=${MODEL:-resnet20} EPOCHS=${EPOCHS:-5} BATCH=${BATCH:-128} LR=${LR:-0.1} MOMENTUM=${MOMENTUM:-0.9}
export WD=${WD:-5e-4} LR_SCHEDULE=${LR_SCHEDULE:-cosine} AUGMENT=${AUGMENT-crop:4,flip} THREADS=${THREADS:-2}
export SAME_INIT=${SAME_INIT:-1}
exec "$(dirname "${BASH_SOURCE[0]}")/accuracy.sh"
