#!/usr/bin/env bash
# Detection-quality benchmark: simulates tenants of several sizes and
# seeds, each with every campaign (forged-token, token-replay,
# consent-phish, password-spray) and every benign confounder, runs them
# through the detection pipeline (internal/detect: ordering, the built-in Sigma rules, behaviours,
# incidents, impact), as hunt --report does, and scores them against the
# simulator's ground truth: per campaign recall, precision (incidents that
# match only that campaign), incidents per intrusion (target 1), message
# recall and precision, alert latency in event time and agreement of the
# evidence-completeness flag; overall incident precision and the peak RSS.
# Then runs over the real samples in ../shared/data and counts the alerts
# they raise.
#
# Usage: bench/detection.sh [SEEDS] [USERS] [DAYS] [FLAGS...]   e.g. bench/detection.sh 1,2,3 50,200 21
# Further flags go to the bench: -signin-delay 3h feeds the records in
# journal order (as vigil serve and reindex read them) with the sign-ins
# arriving 3 h after the other logs; -max-source-lag 0 judges without
# waiting for a late sign-in log; -mail-delay 24h has the unified audit
# log arrive a day after the others; -max-mail-lag overrides how long
# sign-in evidence is kept for it.
set -euo pipefail
cd "$(dirname "$0")/.."
seeds=${1:-1,2,3}
users=${2:-50,200}
days=${3:-21}
shared=../shared/data
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
go build -o "$bin/detection" ./bench/detection
"$bin/detection" -seeds "$seeds" -users "$users" -days "$days" -shared "$shared" -v "${@:4}"
