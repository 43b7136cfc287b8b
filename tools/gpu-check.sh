#!/usr/bin/env bash
# GPU measurements for the speed work (README, "Training at the GPU's pace"), on a machine
# with no network: carried wheels in .whl/ are installed first when present.
#   bash tools/gpu-check.sh bench     the CUDA tests, then python -m stn bench of config/paper.yaml:
#                                     each conv + pool pair as a conv then a pool and as one
#                                     polyphase conv, and the step with polyphase true and all
#                                     against today, and the fastest without the training log (its cost)
#   bash tools/gpu-check.sh profile   torch.profiler of the S and T steps (bf16 + channels_last,
#                                     without and with polyphase blocks): where a step's time goes
#   bash tools/gpu-check.sh precision config/gpu-quick.yaml's step with and without polyphase; test
#                                     error of bf16 against fp32 (STN-C1 on R, 2 seeds, polyphase)
#   bash tools/gpu-check.sh quick     config/gpu-quick.yaml on the embedded digits, timed
#   bash tools/gpu-check.sh fidelity  table 1's R column: config/paper.yaml's R runs of seed 0 (CNN,
#                                     STN-C0, C1, DL1, SL1) at its 150k steps from the official MNIST
#                                     files in resources/data/mnist (carry them), evaluated beside the
#                                     paper's errors (python -m stn.fidelity). Stops after
#                                     FIDELITY_SECONDS (540) and writes every run's state to
#                                     $OUT/fidelity-state.tar; a later call given that file as
#                                     FIDELITY_STATE (default results/fidelity-state.tar) resumes.
#                                     FIDELITY_PARALLEL runs train at once (1); FIDELITY_NETWORKS
#                                     limits the networks; --dry-run: CPU, embedded digits, 6 steps
# Writes logs and reports to $OUT (default results/gpu-check).
set -uo pipefail
stage=${1:-bench}
OUT=${OUT:-results/gpu-check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,memory.total,utilization.gpu --format=csv,noheader
fi

precision_check() {  # STN-C1 on R (embedded digits): test error of fp32 against bf16, 2 seeds
  local dir=/tmp/precision
  mkdir -p $dir
  local base=(--set device=cuda --set data.source=embedded --set task.name=R --set task.canvas=28
    --set task.rotation=90 --set task.test_repeats=5 --set model.network=STN-C1
    --set model.backbone_args.channels=[64,64] --set model.backbone_args.loc_head=authors
    --set train.batch_size=256 --set train.lr=0.01
    --set train.epochs=null --set train.iterations=1500 --set train.checkpoint_every=10000
    --set train.cuda_graph=true --set train.polyphase=true)
  python3 -m stn prepare "${base[@]}" --out $dir/test.pt >/dev/null
  for precision in fp32 bf16; do
    for seed in 0 1; do
      python3 -m stn train "${base[@]}" --set seed=$seed --set train.precision=$precision \
        --checkpoint $dir/$precision-$seed.pt --quiet | grep train_seconds
      python3 -m stn evaluate --checkpoint $dir/$precision-$seed.pt --test-set $dir/test.pt \
        --device cuda | sed "s/^/$precision: /"
    done
  done
}

case $stage in
bench)
  timeout 150 python3 -m pytest -q -p no:cacheprovider tests/test_training_step.py tests/test_devices.py \
    tests/test_backbones.py 2>&1 | tail -8 | tee "$OUT/pytest.log"
  timeout 90 python3 -m stn bench --config config/paper.yaml --device cuda --seconds 0.3 --blocks \
    --tasks R S T --networks CNN STN-SL1 --out "$OUT/blocks-paper.json" 2>&1 | tee "$OUT/blocks.txt"
  timeout 300 python3 -m stn bench --config config/paper.yaml --device cuda --seconds 0.5 --repeats 2 \
    --levers today bf16+channels_last+graph+polyphase bf16+channels_last+graph+polyphase_all \
    bf16+channels_last+graph+polyphase_all+no_log \
    --out "$OUT/bench-paper.json" 2>/tmp/bench.err | tee "$OUT/bench.txt"
  tail -3 /tmp/bench.err
  ;;
profile)
  timeout 120 python3 -m stn bench --config config/paper.yaml --device cuda --profile 10 \
    --tasks S T --networks CNN STN-SL1 --levers bf16+channels_last bf16+channels_last+polyphase \
    --out /tmp/profile/profile-paper.json 2>/tmp/profile.err | cut -c1-180 | tee "$OUT/profile.txt"
  tail -3 /tmp/profile.err
  ;;
precision)
  timeout 120 python3 -m stn bench --config config/gpu-quick.yaml --device cuda --seconds 0.4 \
    --levers today graph graph+polyphase --out "$OUT/bench-quick.json" 2>/tmp/quick.err | tee "$OUT/bench-quick.txt"
  timeout 120 bash -c "$(declare -f precision_check); precision_check" 2>&1 | tee "$OUT/precision.log"
  ;;
quick)
  printf 'datasets: {mnist: {source: embedded}}\ntasks: {R: {test_repeats: 5}}\n' >/tmp/embedded.yaml
  start=$(date +%s)
  timeout "${QUICK_LIMIT:-480}" python3 -m snakemake --profile profiles/gpu \
    --configfile config/gpu-quick.yaml /tmp/embedded.yaml >"$OUT/quick.log" 2>&1
  echo "gpu-quick: exit $? after $(($(date +%s) - start)) s"
  tail -3 "$OUT/quick.log"
  cat results/tables/mnist.md results/tables/mnist_oracle.md results/tables/mnist_contrasts.md 2>/dev/null \
    | tee "$OUT/tables.md"
  cp results/figures/mnist_oracle.png results/figures/mnist_angles.png "$OUT/" 2>/dev/null
  grep -h "train_seconds\|device" results/runs/R/*/seed*/metrics.json 2>/dev/null | head -40 >"$OUT/metrics.txt"
  ;;
fidelity)
  state=$(mktemp -d) archive=${FIDELITY_STATE:-results/fidelity-state.tar}
  args=(--config config/paper.yaml --state "$state" --parallel "${FIDELITY_PARALLEL:-1}"
    --deadline "${FIDELITY_SECONDS:-540}")
  if [ -n "${FIDELITY_NETWORKS:-}" ]; then
    read -ra networks <<<"$FIDELITY_NETWORKS"
    args+=(--networks "${networks[@]}")
  fi
  if [ "${2:-}" = --dry-run ]; then
    args+=(--dry-run)
  elif ! ls resources/data/mnist/t10k-labels-idx1-ubyte* >/dev/null 2>&1; then
    echo "fidelity: no MNIST files in resources/data/mnist (this machine has no network): copy the four"
    echo "official files there and carry resources/data/mnist"
    exit 2
  fi
  [ -f "$archive" ] && tar -xf "$archive" -C "$state" && echo "fidelity: resuming from $archive"
  python3 -m stn.fidelity "${args[@]}" | tee "$OUT/fidelity.md"
  status=${PIPESTATUS[0]}
  tar -cf "$OUT/fidelity-state.tar" -C "$state" --exclude='./test-*' .
  size=$(du -h "$OUT/fidelity-state.tar" | cut -f1)
  echo "fidelity: exit $status; states in $OUT/fidelity-state.tar ($size);"
  echo "exit 3: unfinished, run again with that file as FIDELITY_STATE"
  rm -rf "$state"
  exit "$status"
  ;;
esac
