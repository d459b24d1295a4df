#!/usr/bin/env bash
# cli-latency.sh: how long common `kps` commands take against a local `kps serve` (embedded
# SQLite) holding 20 key pairs: hyperfine, 5 warm-up runs and 100 measured runs per command.
# Issue 15's goal is ≤ 100 ms for `kps keypair list`. Run from the repository root:
#   bash bench/cli-latency.sh            (needs hyperfine: apt-get install hyperfine)
set -euo pipefail
export GOTOOLCHAIN="${GOTOOLCHAIN:-go1.27.3}"
work=$(mktemp -d)
trap 'kill "$serve" 2>/dev/null || true; rm -rf "$work"' EXIT
go build -o "$work/kps" ./cmd/kps
export HOME="$work/home"
mkdir -p "$HOME"
port=$((20000 + RANDOM % 10000))
KPS_ADMIN_PASSWORD=cli-latency-admin-pw "$work/kps" serve --listen "127.0.0.1:$port" --data-dir "$work/data" >"$work/serve.log" 2>&1 &
serve=$!
for _ in $(seq 50); do curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break; sleep 0.2; done
echo cli-latency-admin-pw | "$work/kps" login --endpoint "http://127.0.0.1:$port" --user admin --password-stdin >/dev/null 2>&1
for i in $(seq -w 1 20); do
	(cd "$work" && ./kps keypair create "lat-$i" --out "k$i.pem" >/dev/null 2>&1)
done
cd "$work"
hyperfine -N --warmup 5 --runs 100 './kps keypair list' './kps server list' './kps task list-failed' './kps keypair show lat-01'
