#!/usr/bin/env bash
# Trains the shipped speech checkpoints in order: speaker encoder, the two evaluation judges, the speech VQ-VAE,
# its vocoder head.
# Usage: scripts/train-speech.sh [MINUTES_FOR_THE_SPEECH_MODEL]   (data from ../shared/data; runs/ holds the runs)
set -euo pipefail
DATA=${DATA:-${VQTOOL_DATA:-../shared/data}}
MINUTES=${1:-55}
VQ=${VQ:-vqtool}
$VQ train audio-classifier --data "$DATA/fsdd" --data "$DATA/speechocean" --label speaker --name speech-speakers \
    --steps 2000 --seed 0 --quiet
$VQ train audio-classifier --data "$DATA/fsdd" --data "$DATA/speechocean" --label speaker --name speech-speaker-judge \
    --steps 2000 --seed 1 --width 192 --quiet
$VQ train audio-classifier --data "$DATA/fsdd" --label digit --name speech-digit-judge --steps 1500 --seed 2 --warp 0.2 --quiet
$VQ train speech --data "$DATA/fsdd" --data "$DATA/speechocean" --speaker-encoder runs/speech-speakers/speech-speakers.safetensors \
    --speaker-judge runs/speech-speaker-judge/speech-speaker-judge.safetensors \
    --digit-judge runs/speech-digit-judge/speech-digit-judge.safetensors \
    --steps 30000 --time-limit "$MINUTES" --checkpoint-every 250 --quiet
# the shipped model then continued for 25 minutes at half the peak learning rate
$VQ train speech --data "$DATA/fsdd" --data "$DATA/speechocean" --speaker-encoder runs/speech-speakers/speech-speakers.safetensors \
    --speaker-judge runs/speech-speaker-judge/speech-speaker-judge.safetensors \
    --digit-judge runs/speech-digit-judge/speech-digit-judge.safetensors \
    --steps 30000 --time-limit 25 --lr 5e-4 --checkpoint-every 250 --resume --quiet
# the vocoder head in place of Griffin-Lim (the shipped one: 40 minutes on one thread, OMP_NUM_THREADS=1,
# then 22 more on two at half the learning rate);
# it replaces runs/speech/speech.safetensors' copy under runs/speech-vocoder/, codes and voices unchanged
$VQ train vocoder --speech runs/speech/speech.safetensors --data "$DATA/fsdd" --data "$DATA/speechocean" \
    --width 128 --blocks 4 --phase-weight 0.3 --speaker-judge runs/speech-speaker-judge/speech-speaker-judge.safetensors \
    --digit-judge runs/speech-digit-judge/speech-digit-judge.safetensors --eval-clips 200 \
    --steps 30000 --time-limit 40 --checkpoint-every 250 --quiet
$VQ train vocoder --speech runs/speech/speech.safetensors --data "$DATA/fsdd" --data "$DATA/speechocean" \
    --width 128 --blocks 4 --phase-weight 0.3 --speaker-judge runs/speech-speaker-judge/speech-speaker-judge.safetensors \
    --digit-judge runs/speech-digit-judge/speech-digit-judge.safetensors --eval-clips 200 \
    --steps 30000 --time-limit 22 --lr 5e-4 --resume --checkpoint-every 250 --quiet
