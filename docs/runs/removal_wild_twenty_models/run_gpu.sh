#!/usr/bin/env bash
# The script that ran driver.py on the lent GPU, from the repository root,
# as .device/gpu.sh with the driver at .device/probe.py and .device/
# holding the Fashion-MNIST files and an ml_collections wheel (the GPU
# machine has no network): twenty driver processes side by side, then
# their lines gathered into $OUT/probe.jsonl (gpu_seeds_5_14.jsonl here).
# usage: bash .device/gpu.sh start|collect MAX_WAIT_S
mode=$1; max_wait=$2
R=/tmp/probe_run
if [ "$mode" = start ]; then
  mkdir -p /usr/share/datasets && cp -r .device/fashion-mnist /usr/share/datasets/
  python3 -m pip install -q --no-index --find-links .device/wheels ml_collections
  python3 -m pip install -q --no-deps --no-build-isolation -e . > /dev/null 2>&1 || echo "pip -e failed"
  nvidia-smi -L; python3 -c "import jax, flax; print(jax.__version__, flax.__version__, jax.devices())"
  mkdir -p $R/res $R/logs
  export XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 PYTHONPATH=$PWD
  for s in $(seq 5 14); do for row in content noise; do
    setsid nohup python3 .device/probe.py $row $s $R/wd_${row}_$s $R/res/${row}_s$s.jsonl > $R/logs/${row}_s$s.log 2>&1 &
  done; done
fi
t0=$(date +%s)
while pgrep -f .device/probe.py > /dev/null && [ $(( $(date +%s) - t0 )) -lt $max_wait ]; do sleep 10; done
echo "running: $(pgrep -f .device/probe.py | wc -l) after $(( $(date +%s) - t0 )) s"
cat $R/res/*.jsonl > $OUT/probe.jsonl 2>/dev/null
for f in $R/logs/*.log; do echo "== $f"; grep -v "^I1\|^W1" $f | grep -v '^{' | tail -n 3; done > $OUT/logs.txt
nvidia-smi > $OUT/nvidia.txt
wc -l $OUT/probe.jsonl; tail -n 40 $OUT/logs.txt
