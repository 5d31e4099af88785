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
#   thesis_mnist          ~17 h    (8 methods x 5 lr x 10 seeds x 150 epochs; ~1.7 h a seed)
#   fig5                  k = 7, 4: ~7 h (3 lr x 2 methods x 3 seeds x 500 epochs, 60k
#                         images); k = 2: ~9 h; k = 1 (run last): ~27 h
#   thesis_cifar          ~17 h    on Fashion-MNIST (tag "fashion"; CIFAR-10 is not here)
# Every grid runs seeds outermost, so an unfinished one already holds whole seeds: draw it
# with `pathcond run NAME --scale full --no-train --publish`.
# Not planned on CPU: fig2 / app_k on a substitute (~30 core-hours), fig3 / app_l
# (GPU-sized convolutions): run them where a GPU is lent.
#
# Usage: bash scripts/full_cpu.sh            (logs in runs/experiments/full_cpu-*.log)
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

lane_a() {
  run fig1
  run thesis_fixed_value
  run thesis_mnist
}
lane_b() {
  run gsgd_mnist
  run fig5
  run thesis_cifar --set data.name=fashion_mnist --tag fashion
}
lane_a > runs/experiments/full_cpu-a.log 2>&1 &
lane_b > runs/experiments/full_cpu-b.log 2>&1 &
wait
