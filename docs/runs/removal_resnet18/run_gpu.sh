#!/usr/bin/env bash
# The script that trained and repaired the ResNet-18 UBW-P and BadNets
# models on the lent GPU (copied to .device/gpu.sh; .device/ held the
# Fashion-MNIST files and an ml_collections wheel, the GPU machine having
# no network): a launcher process per (row, seed), side by side,
# their JSONs written to $OUT.
# usage: bash .device/gpu.sh MAX_WAIT_S SEED...
max_wait=$1; shift
R=/tmp/resnet_run
mkdir -p /usr/share/datasets && cp -r .device/fashion-mnist /usr/share/datasets/
python3 -m pip install -q --no-index --find-links .device/wheels ml_collections
nvidia-smi -L; python3 -c "import jax, flax; print(jax.__version__, flax.__version__, jax.devices())"
mkdir -p $R/logs
export XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
for seed in "$@"; do for row in ubw_p badnets; do
  setsid nohup python3 -m experiments.removal \
      --config=configs/removal.py:$row,fashion_mnist,resnet18 \
      --config.seed=$seed --config.train_fraction=0.1 \
      --config.train.num_epochs=100 --config.train.milestones="(75,90)" \
      --config.train.checkpoint_every_epochs=25 \
      --config.removal.columns="('fine_tuning_fc','pruning')" \
      --config.removal.detectors=False \
      --workdir=$R/wd_${row}_$seed \
      --output_json=$OUT/${row}_s$seed.json > $R/logs/${row}_s$seed.log 2>&1 &
done; done
t0=$(date +%s)
while pgrep -f experiments.removal > /dev/null && [ $(( $(date +%s) - t0 )) -lt $max_wait ]; do sleep 10; done
echo "running: $(pgrep -f experiments.removal | wc -l) after $(( $(date +%s) - t0 )) s"
for f in $R/logs/*.log; do echo "== $f"; grep -v "^I1\|^W1" $f | tail -n 4; grep "step\|epoch" $f | tail -n 2; done > $OUT/logs.txt
nvidia-smi > $OUT/nvidia.txt
# The device returns a limited number of files: the launchers' pictures
# folders beside each JSON crowded one JSON out of the first call of the
# rerun at 02cc290; the second call removed them, as here.
rm -rf $OUT/*_pictures
ls $OUT; tail -n 60 $OUT/logs.txt
