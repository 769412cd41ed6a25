#!/usr/bin/env bash
# Submit a run to an existing Ray cluster with the Jobs API (needs `pip install "hessian-pipeline[cluster]"`,
# i.e. ray[default], here and on the cluster):
#   RAY_ADDRESS=http://head:8265 jobs/ray/submit.sh +experiment=cifar10_3c3d data.root=/data/cifar
# The job's workers are sized from the cluster (one per GPU, or per node without GPUs). OUTPUT_DIR
# must be on storage every node sees (the workers write the Zarr store); rerun with the same
# OUTPUT_DIR to resume. Extra `ray job submit` options go in RAY_JOB_ARGS (e.g. --no-wait).
set -euo pipefail
: "${RAY_ADDRESS:?set RAY_ADDRESS to the dashboard address of the cluster, e.g. http://head:8265}"
OUTPUT_DIR=${OUTPUT_DIR:-/shared/hessian-pipeline/$(date +%Y%m%d-%H%M%S)}
export RAY_AUTH_MODE=${RAY_AUTH_MODE:-disabled}
echo "submitting to $RAY_ADDRESS; output directory $OUTPUT_DIR" >&2
# shellcheck disable=SC2086  # RAY_JOB_ARGS is a list of options
exec ray job submit --address "$RAY_ADDRESS" --working-dir "$(dirname "$0")/../.." ${RAY_JOB_ARGS:-} \
  --runtime-env-json '{"env_vars": {"PYTHONUNBUFFERED": "1", "RAY_AUTH_MODE": "'"$RAY_AUTH_MODE"'"}}' -- \
  python -m pipeline cluster=ray hydra.run.dir="$OUTPUT_DIR" "$@"
