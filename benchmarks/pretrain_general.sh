#!/usr/bin/env bash
# The shipped general model (issue 12): self-supervised pretraining of the camera-aware DAIF-Net over
# the 'general' camera distribution (focalstack.optics.distribution: phones to DSLRs, 2-10 frames),
# on procedural rooms and the RGB-D sources, each stack rendered through its own random camera.
# Ground truth is written by synth but never read by training (--supervision self); validation
# metrics only.
#
#   benchmarks/pretrain_general.sh                    # synthesise (once) and train; rerun to resume exactly
#   benchmarks/pretrain_general.sh --max-minutes 60   # extra options go to `focalstack train`
#
# The DSLR-indoor scenes use `--split 0.2 --seed 0`, the same split as benchmarks/general.py, and only
# their train/ half is trained on: the validation scenes of the camera-generality benchmark are
# never seen. Data and run live in bench_work/pretrain/ (git-ignored; WORK= another folder); the run folder resumes.
#
# Environment: NUM_PROCEDURAL procedural scenes linked into the training set (default 1500);
# DSLR_DRAWS extra renderings of every DSLR-indoor training scene, each under new random cameras
# (resize 0.4, seeds 1..N, the split kept by --split-seed 0; default 0); RUN the run folder and
# TRAIN the folder of links (defaults bench_work/pretrain/run and …/train; one per data mix).
set -euo pipefail
cd "$(dirname "$0")/.."
FS=${FS:-.venv/bin/focalstack}
W=${WORK:-bench_work/pretrain}
STEPS=${STEPS:-20000}
NUM_PROCEDURAL=${NUM_PROCEDURAL:-1500}
DSLR_DRAWS=${DSLR_DRAWS:-0}
RUN=${RUN:-$W/run}
T=${TRAIN:-$W/train}
SHARED=../shared/data
mkdir -p "$W"

synth() {  # synth OUT ARGS...: skip a finished dataset (synth itself resumes an interrupted one)
  local out=$1; shift
  [ -f "$W/$out.done" ] && return 0
  "$FS" synth "$W/$out" --camera-distribution general --quiet "$@"
  touch "$W/$out.done"
}

synth procedural --num "$NUM_PROCEDURAL" --size 128 128 --seed 11
synth procedural_val --num 24 --size 128 128 --seed 12
if [ -d "$SHARED/dfd_indoor_carvalho2018" ]; then
  synth dslr_r50 --source dslr_indoor --resize 0.5 --split 0.2 --seed 0
  synth dslr_r30 --source dslr_indoor --resize 0.3 --split 0.2 --seed 0
  for k in $(seq 1 "$DSLR_DRAWS"); do
    synth "dslr_r40_s$k" --source dslr_indoor --resize 0.4 --split 0.2 --split-seed 0 --seed "$k"
  done
fi
[ -d "$SHARED/middlebury2014_motorcycle_quarter" ] && synth middlebury --source middlebury --resize 0.3 --seed 13
[ -d "$SHARED/nyuv2_sample_0045" ] && synth nyuv2 --source nyuv2 --resize 0.3 --seed 14

# one training folder of links to every training sample (the DSLR val/ halves stay out)
mkdir -p "$T"
procedural=$(find "$W/procedural" -mindepth 1 -maxdepth 1 -type d -name 'procedural_*' | sort | head -n "$NUM_PROCEDURAL")
dslr_draws=$(for k in $(seq 1 "$DSLR_DRAWS"); do echo "$W/dslr_r40_s$k"/train/*; done)
for d in $procedural "$W"/dslr_r50/train/* "$W"/dslr_r30/train/* $dslr_draws "$W"/middlebury/* "$W"/nyuv2/*; do
  [ -f "$d/camera.json" ] || continue
  rel=${d#"$W"/}                       # e.g. dslr_r50/train/<scene>
  name=${rel//\//_}
  [ -e "$T/$name" ] || ln -s "$(realpath "$d")" "$T/$name"
done

exec "$FS" train "$T" --val "$W/procedural_val" --out "$RUN" --width 8 --crop 96 96 --batch-size 4 \
  --max-steps "$STEPS" --max-kernel-size 31 --val-interval 500 --ckpt-interval 250 --workers 1 "$@"
