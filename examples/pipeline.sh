#!/usr/bin/env bash
# Train, check the test accuracy from evaluate --json, and predict from stdin to stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
nnctl train specs/iris_mlp.toml --out runs/pipeline-iris.h5 --quiet
nnctl evaluate runs/pipeline-iris.h5 --json \
  | python3 -c 'import json, sys; a = json.load(sys.stdin)["accuracy"]; print("test accuracy", a); sys.exit(a < 0.9)'
# features without the label column, straight into predict; labels come back as species names
cut -d, -f1-4 examples/data/iris-test.csv | nnctl predict runs/pipeline-iris.h5 - --proba | head -5
