#!/usr/bin/env bash
# Submit a run to an existing Ray cluster with the Jobs API.
#   RAY_ADDRESS=http://head:8265 jobs/ray/submit.sh +experiment=cifar10_3c3d data.root=/data/cifar
# The output directory must be on storage every node sees (the workers write the Zarr store).
set -euo pipefail
: "${RAY_ADDRESS:?set RAY_ADDRESS to the dashboard address of the cluster, e.g. http://head:8265}"
OUTPUT_DIR=${OUTPUT_DIR:-/shared/hessian-pipeline/$(date +%Y%m%d-%H%M%S)}
export RAY_AUTH_MODE=${RAY_AUTH_MODE:-disabled}
exec ray job submit --address "$RAY_ADDRESS" --working-dir "$(dirname "$0")/../.." \
  --runtime-env-json '{"env_vars": {"PYTHONUNBUFFERED": "1"}}' -- \
  python -m pipeline cluster=ray hydra.run.dir="$OUTPUT_DIR" "$@"
