#!/bin/bash
# Cold `make install` as it is now: uv from requirements.lock, a fresh cache every run.
set -e
cd "$(dirname "$0")/../.."
d=$(mktemp -d /tmp/coldB.XXXX)
python3 -m venv "$d/venv"
PIP_NO_CACHE_DIR=1 "$d/venv/bin/python" -m pip install --quiet "uv==0.13.9"
export UV_CACHE_DIR="$d/cache"
"$d/venv/bin/uv" pip install --quiet --python "$d/venv/bin/python" -r requirements.lock
"$d/venv/bin/uv" pip install --quiet --python "$d/venv/bin/python" --no-deps -e .
"$d/venv/bin/python" -c "import fraud_assets, dagster, mlflow, pyspark, catboost, xgboost"
rm -rf "$d"
