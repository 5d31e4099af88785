#!/usr/bin/env bash
# The published (`full`) protocols whose cost fits a CPU, in two lanes (one per core), each
# experiment resumable: rerun this script to continue where it stopped. Results are
# published to results/ and docs/figures/ as each experiment completes.
#
# Cost on one core of this project's 2-core machine (torch 2.13 CPU, one thread per run,
# both lanes busy):
#   fig1                  ~1.5 h   (400 random inits, lr 1e-3, up to 500k GD steps each)   done
#   thesis_fixed_value    ~1 h     (5 lr x 5 values x 5 seeds x 20 epochs)                   done
#   gsgd_mnist            ~5 h     (6 methods x 5 seeds x 100 epochs, 60k MNIST)            done
#   thesis_mnist          ~2.2 h a seed (8 methods x 5 lr x 150 epochs), 10 seeds
#   fig5                  k = 7, 4: ~8 h (3 lr x 2 methods x 3 seeds x 500 epochs, 60k
#                         images) done; k = 2: ~9 h; k = 1 (run last): ~27 h
#   fig2 on MNIST         ~12-20 h (5 methods x 6 depths x 3 seeds, width 500, 60k images,
#                         4-11 s an epoch, up to 100 epochs: stops at 99% train accuracy)
#   thesis_cifar          ~2.5 h a seed on Fashion-MNIST (tag "fashion"; no CIFAR-10 here)
# The most informative parts run first (`--only`): Fig 5 at the large k (the claim is about
# them; PathCond barely moves k = 1), one seed of each thesis grid, then the rest. Every grid
# runs seeds outermost; draw an unfinished one with
# `pathcond run NAME --scale full --no-train --publish`.
# Not planned on CPU: fig3 / app_l (GPU-sized convolutions), app_k beyond Fig 2's lr.
#
# Usage: bash scripts/full_cpu.sh [a|b]      (both lanes by default; one lane restarts only
#        it; logs in runs/experiments/full_cpu-*.log). thesis_cifar's substitute needs
#        Fashion-MNIST: `apt-get install dataset-fashion-mnist` (or PATHCOND_FASHION_MNIST_DIR).
# Before the machine goes away: stop it, run `bash scripts/keep_partial.sh` and commit
# results/partial/: the next machine's run picks the finished units up from there (runs/ is
# not in the repository, so unfinished training runs restart from their first epoch).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p runs/experiments
# one torch thread per run (an environment setting, so the runs' specifications stay those
# of the full scale and a GPU machine's units are interchangeable with these)
export OMP_NUM_THREADS=1
run() { nice -n 10 .venv/bin/pathcond run "$@" --scale full --publish; }

# fig1, thesis_fixed_value and gsgd_mnist are done (results/*_full.json; rerun them with
# `pathcond run NAME --scale full --publish`, which redraws from the published units).
fig2_mnist() { run fig2 --set data.name=mnist --tag mnist "$@"; }
# Fig 5's control (docs/RESULTS.md): plain SGD with the output layer's lr times PathCond's factor
fig5_controls() {
  run fig5 --tag lrctl --set "methods=[{label: sgd_lr_output, method: baseline, lr_from_pathcond: [decoder.2.weight]}]" "$@"
}
lane_a() {
  run thesis_mnist --only seed=1,seed=2      # spreads over seeds (seed 0 done)
  fig2_mnist --only enorm_bn,enorm_epoch     # the ENorm variants that change the training
  run thesis_mnist
  fig2_mnist                                 # the rest: ENorm in the paper setting, an
                                             # exact no-op on MLP_BN (copies of the baseline)
}
lane_b() {
  fig5_controls --only k=7,k=4 --only lr=0.01,lr=0.1   # the output-lr control, all seeds
  run thesis_cifar --set data.name=fashion_mnist --tag fashion --only seed=0   # a first
                                             # full-protocol look at the thesis CIFAR net
  run fig5 --only k=2 --only seed=0          # the gain at k = 2, one seed
  run fig5 --only k=2                        # k = 2 at every seed before k = 1 starts
  run fig5
  run thesis_cifar --set data.name=fashion_mnist --tag fashion
}
lanes="${1:-a b}"
case "$lanes" in a|b|"a b") ;; *) echo "usage: bash scripts/full_cpu.sh [a|b]" >&2; exit 2 ;; esac
for lane in $lanes; do "lane_$lane" > "runs/experiments/full_cpu-$lane.log" 2>&1 & done
wait
