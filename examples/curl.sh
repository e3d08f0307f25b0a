#!/usr/bin/env bash
# The init service from curl: POST a recipe, GET the same tensor as a URL, HEAD for its headers
# alone, and the JSON summary (everything but the data) through jq.
#
#   INITSVC_URL=http://127.0.0.1:8000 examples/curl.sh [OUT_DIR]
#
# Writes OUT_DIR/post.safetensors and OUT_DIR/get.safetensors (the same bytes: same recipe, same
# seed). INITSVC_API_KEY, when set, is sent as a bearer token.
set -euo pipefail

URL="${INITSVC_URL:-http://127.0.0.1:8000}"
OUT="${1:-.}"
mkdir -p "$OUT"
CURL=(curl --silent --show-error --fail-with-body)
if [ -n "${INITSVC_API_KEY:-}" ]; then
  CURL+=(--header "Authorization: Bearer ${INITSVC_API_KEY}")
fi

# torch.manual_seed(0); torch.nn.init.kaiming_uniform_(torch.empty(256, 784), a=math.sqrt(5))
RECIPE='{"shape": [256, 784], "init": {"scheme": "kaiming_uniform", "a": 2.23606797749979},
         "dtype": "float32", "device": "cpu", "seed": 0}'
QUERY='shape=256,784&scheme=kaiming_uniform&a=2.23606797749979&dtype=float32&device=cpu&seed=0'

echo "== POST /v1/tensor -> $OUT/post.safetensors"
"${CURL[@]}" -X POST "$URL/v1/tensor" -H 'content-type: application/json' -d "$RECIPE" \
  -o "$OUT/post.safetensors"

echo "== GET /v1/tensor?$QUERY -> $OUT/get.safetensors"
"${CURL[@]}" "$URL/v1/tensor?$QUERY" -o "$OUT/get.safetensors"
if cmp -s "$OUT/post.safetensors" "$OUT/get.safetensors"; then
  echo "POST and GET gave the same bytes"
else
  echo "POST and GET answers differ" >&2
  exit 1
fi

echo "== HEAD /v1/tensor (headers only: exact Content-Length, ETag, seed, device)"
"${CURL[@]}" --head "$URL/v1/tensor?$QUERY" | tr -d '\r' \
  | grep -iE '^(content-length|etag|cache-control|x-init-seed|x-init-device):'

echo "== JSON mode (Accept: application/json): stats without the data"
if command -v jq >/dev/null 2>&1; then
  "${CURL[@]}" "$URL/v1/tensor?$QUERY" -H 'accept: application/json' \
    | jq --compact-output '.tensors.weight | {shape, dtype, stats: (.stats | {numel, mean, std, min, max, bound})}'
else
  echo "jq is not installed (apt-get install jq); skipping the JSON part" >&2
fi
