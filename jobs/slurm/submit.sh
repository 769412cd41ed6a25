#!/usr/bin/env bash
# Submit jobs/slurm/seigh.sbatch with its log directory in place (SLURM opens logs/%x-%j.out
# before the job starts). Options for sbatch go in SBATCH_ARGS; the rest are pipeline overrides:
#   SBATCH_ARGS="--nodes=4 --time=12:00:00" jobs/slurm/submit.sh +experiment=imagenet_resnet18 data.root=/data/imagenet
set -euo pipefail
mkdir -p logs
# shellcheck disable=SC2086  # SBATCH_ARGS is a list of options
exec sbatch ${SBATCH_ARGS:-} "$(dirname "$0")/seigh.sbatch" "$@"
