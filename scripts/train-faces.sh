#!/usr/bin/env bash
# Trains the shipped face checkpoints in order: each model's evaluation judge, then the Fader Network.
# Usage: scripts/train-faces.sh [SMILE_MINUTES [UTK_MINUTES]]   (data from ../shared/data; runs/ holds the runs)
set -euo pipefail
DATA=${DATA:-${VQTOOL_DATA:-../shared/data}}
SMILE_MINUTES=${1:-25}
UTK_MINUTES=${2:-28}
VQ=${VQ:-vqtool}
FADER=(--steps 8000 --ramp-steps 1000 --lambda 1e-2 --lr 5e-4 --guidance 0.02 --checkpoint-every 500 --quiet)
# faces-smile: SMILEsmileD, grayscale, the smile/ folder is the attribute
$VQ train classifier --data "$DATA/smiles/smiles.zip" --attributes smile --name faces-smile-judge \
    --steps 1500 --batch-size 64 --seed 11 --quiet
$VQ train fader --data "$DATA/smiles/smiles.zip" --attributes smile --name faces-smile \
    --judge runs/faces-smile-judge/faces-smile-judge.safetensors --time-limit "$SMILE_MINUTES" "${FADER[@]}"
# faces-utk: UTKFace, colour, attributes from labels.csv
UTK=(--data "$DATA/utkface/utkface-64.zip" --labels "$DATA/utkface/labels.csv" --attributes "male=gender:male,young=age<30")
$VQ train classifier "${UTK[@]}" --name faces-utk-judge --steps 1200 --batch-size 64 --seed 12 --quiet
$VQ train fader "${UTK[@]}" --name faces-utk --judge runs/faces-utk-judge/faces-utk-judge.safetensors \
    --time-limit "$UTK_MINUTES" "${FADER[@]}"
