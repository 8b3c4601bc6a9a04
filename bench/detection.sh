#!/usr/bin/env bash
# Detection-quality benchmark: simulates tenants of several sizes and
# seeds, each with every campaign (forged-token, token-replay,
# consent-phish, password-spray) and every benign confounder, runs vigil's
# behaviours and incident grouping over the decoded logs and scores them
# against the simulator's ground truth: per campaign incident-level recall,
# alert latency in event time, impact accuracy (messages found against
# messages read) and agreement of the evidence-completeness flag; overall
# incident precision. Then runs over the real samples in ../shared/data
# and counts the alerts they raise.
#
# Usage: bench/detection.sh [SEEDS] [USERS] [DAYS]   e.g. bench/detection.sh 1,2,3 50,200 21
set -euo pipefail
cd "$(dirname "$0")/.."
seeds=${1:-1,2,3}
users=${2:-50,200}
days=${3:-21}
shared=../shared/data
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
go build -o "$bin/detection" ./bench/detection
"$bin/detection" -seeds "$seeds" -users "$users" -days "$days" -shared "$shared" -v
