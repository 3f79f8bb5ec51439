#!/bin/bash
# Cold `make install` as it was: pip resolving pyproject.toml's ranges, no cache.
set -e
cd "$(dirname "$0")/../.."
d=$(mktemp -d /tmp/coldA.XXXX)
python3 -m venv "$d/venv"
export PIP_NO_CACHE_DIR=1
"$d/venv/bin/python" -m pip install --quiet --upgrade pip
"$d/venv/bin/python" -m pip install --quiet -e ".[dev]"
"$d/venv/bin/python" -c "import fraud_assets, dagster, mlflow, pyspark, catboost, xgboost"
rm -rf "$d"
