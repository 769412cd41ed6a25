#!/usr/bin/env bash
# Submit a run to an existing Ray cluster with the Jobs API (needs `pip install "hessian-pipeline[cluster]"`,
# i.e. ray[default], here and on the cluster):
#   RAY_ADDRESS=http://head:8265 jobs/ray/submit.sh +experiment=cifar10_3c3d data.root=/data/cifar
# The job's workers are sized from the cluster (one per GPU, or per node without GPUs). OUTPUT_DIR
# must be on storage every node sees (the workers write the Zarr store); rerun with the same
# OUTPUT_DIR to resume. Extra `ray job submit` options go in RAY_JOB_ARGS (e.g. --no-wait).
#
# What is uploaded: SHIP=package (the default) sends only the pipeline/ package (its Python files
# and configs, a few hundred KiB), never the rest of the checkout (data, checkpoints, run
# directories); the cluster needs the dependencies installed (e.g. the docker/ image).
# SHIP=none sends nothing: the cluster's image has hessian-pipeline installed (the KubeRay default).
# A package over SHIP_LIMIT_MB (default 20) is refused before anything is sent.
set -euo pipefail
: "${RAY_ADDRESS:?set RAY_ADDRESS to the dashboard address of the cluster, e.g. http://head:8265}"
OUTPUT_DIR=${OUTPUT_DIR:-/shared/hessian-pipeline/$(date +%Y%m%d-%H%M%S)}
SHIP=${SHIP:-package}
SHIP_LIMIT_MB=${SHIP_LIMIT_MB:-20}
export RAY_AUTH_MODE=${RAY_AUTH_MODE:-disabled}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORKING_DIR=()
case "$SHIP" in
  none) ;;
  package)
    STAGE=$(mktemp -d "${TMPDIR:-/tmp}/hessian-ship.XXXXXX")
    trap 'rm -rf "$STAGE"' EXIT
    # Copy the package only (no bytecode caches).
    tar -C "$ROOT" -cf - --exclude=__pycache__ --exclude='*.pyc' pipeline | tar -C "$STAGE" -xf -
    KIB=$(du -sk "$STAGE" | cut -f1)
    if (( KIB > SHIP_LIMIT_MB * 1024 )); then
      echo "error: the package to upload is $KIB KiB, over SHIP_LIMIT_MB=$SHIP_LIMIT_MB: remove large files from $ROOT/pipeline or raise SHIP_LIMIT_MB" >&2
      exit 2
    fi
    echo "uploading the pipeline package ($KIB KiB) as the job's working directory" >&2
    WORKING_DIR=(--working-dir "$STAGE")
    ;;
  *) echo "error: SHIP must be package or none, got $SHIP" >&2; exit 2 ;;
esac
echo "submitting to $RAY_ADDRESS; output directory $OUTPUT_DIR" >&2
# shellcheck disable=SC2086  # RAY_JOB_ARGS is a list of options
ray job submit --address "$RAY_ADDRESS" "${WORKING_DIR[@]}" ${RAY_JOB_ARGS:-} \
  --runtime-env-json '{"env_vars": {"PYTHONUNBUFFERED": "1", "RAY_AUTH_MODE": "'"$RAY_AUTH_MODE"'"}}' -- \
  python -m pipeline cluster=ray hydra.run.dir="$OUTPUT_DIR" "$@"
