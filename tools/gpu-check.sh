#!/usr/bin/env bash
# GPU measurements for the speed work (README, "Training at the GPU's pace"), on a machine
# with no network: carried wheels in .whl/ are installed first when present.
#   bash tools/gpu-check.sh bench   CUDA tests, bf16 vs fp32 test error, python -m stn bench
#   bash tools/gpu-check.sh quick   config/gpu-quick.yaml on the embedded digits, timed
#   bash tools/gpu-check.sh profile torch.profiler of the S and T steps (eager: augmentation share;
#                                   bf16+channels_last: what S spends its time on)
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
nvidia-smi --query-gpu=name,memory.total,utilization.gpu --format=csv,noheader

precision_check() {  # STN-C1 on R (embedded digits): test error of fp32 against bf16, 2 seeds
  local dir=/tmp/precision
  mkdir -p $dir
  local base=(--set device=cuda --set data.source=embedded --set task.name=R --set task.canvas=28
    --set task.rotation=90 --set task.test_repeats=5 --set model.network=STN-C1
    --set model.backbone_args.channels=[64,64] --set train.batch_size=256 --set train.lr=0.01
    --set train.epochs=null --set train.iterations=1500 --set train.checkpoint_every=10000
    --set train.cuda_graph=true)
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
    2>&1 | tail -15 | tee "$OUT/pytest.log"
  timeout 120 bash -c "$(declare -f precision_check); precision_check" 2>&1 | tee "$OUT/precision.log"
  timeout 300 python3 -m stn bench --config config/paper.yaml --device cuda --seconds 0.4 \
    --levers today fp32 bf16+channels_last graph bf16+channels_last+graph --pack 4 \
    --out "$OUT/bench-paper.json" 2>"$OUT/bench.err" | tee "$OUT/bench.txt"
  tail -5 "$OUT/bench.err"
  ;;
profile)
  timeout 300 python3 -m stn bench --config config/paper.yaml --device cuda --profile 20 \
    --tasks S T --networks CNN STN-SL1 --levers fp32 bf16+channels_last \
    --out "$OUT/profile-paper.json" 2>"$OUT/profile.err" | tee "$OUT/profile.txt"
  tail -5 "$OUT/profile.err"
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
esac
