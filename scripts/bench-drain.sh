#!/usr/bin/env bash
# bench-drain.sh measures what a burst of new notifications costs after the
# 200s: it posts COUNT distinct notifications (loadgen, RATE req/s) to a fresh
# responder (SQLite in a temp dir, console receiver), waits until every one
# has been applied and routed (COUNT "incident routed" console lines), and
# prints the wall time from the first request and the CPU seconds responder
# used meanwhile (utime+stime from /proc), for each of ROUNDS rounds and
# their medians. Ingest alone is scripts/bench.sh; this is the work behind
# it: opening incidents, routing, console lines.
#
# To compare two builds, run it on each, or set OTHER to a second checkout:
# the rounds then alternate between this tree's build and OTHER's.
#
# Usage: scripts/bench-drain.sh                      (3 rounds, about 1 min)
#        COUNT=10000 RATE=2000 ROUNDS=5 scripts/bench-drain.sh
#        OTHER=/path/to/other/checkout scripts/bench-drain.sh
set -euo pipefail

ROUNDS=${ROUNDS:-3}
COUNT=${COUNT:-5000}
RATE=${RATE:-2000}
TOKEN=bench-token-not-a-secret
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PAYLOAD=${PAYLOAD:-$ROOT/testdata/am_v4_firing_10.json}
# shellcheck source=scripts/bench-lib.sh
source "$ROOT/scripts/bench-lib.sh"

WORK=$(mktemp -d /tmp/responder-drain.XXXXXX)
PID=
cleanup() {
	if [[ -n $PID ]]; then
		kill "$PID" 2>/dev/null || true
		wait "$PID" 2>/dev/null || true
	fi
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "building into $WORK/bin"
(cd "$ROOT" && go build -o "$WORK/bin/responder-this" ./cmd/responder && go build -o "$WORK/bin/loadgen" ./cmd/loadgen)
builds=(this)
if [[ -n ${OTHER:-} ]]; then
	(cd "$OTHER" && go build -o "$WORK/bin/responder-other" ./cmd/responder)
	builds+=(other)
fi
duration_ms=$((COUNT * 1000 / RATE))

# run_round BUILD: one fresh responder, one burst; prints "seconds cpu_seconds".
run_round() {
	local build=$1 dir addr
	dir=$(mktemp -d "$WORK/round.XXXXXX")
	responder_config "$dir/responder.yml" "sqlite://$dir/responder.db" "$TOKEN"
	"$WORK/bin/responder-$build" serve --config.file="$dir/responder.yml" --web.listen-address=127.0.0.1:0 >"$dir/log" 2>&1 &
	PID=$!
	addr=$(wait_listening "$dir/log" "$PID")
	wait_ready "$addr" || { log "responder did not become ready:"; cat "$dir/log" >&2; exit 1; }
	local c0 t0 c1 t1 n=0
	c0=$(cpu_ticks "$PID")
	t0=$(date +%s.%N)
	"$WORK/bin/loadgen" --payload="$PAYLOAD" --json --url="http://$addr/webhook/alertmanager" --token=$TOKEN \
		--connections=64 --rate="$RATE" --duration="${duration_ms}ms" >"$dir/loadgen.json"
	for _ in $(seq 1200); do
		n=$(grep -c 'msg="incident routed"' "$dir/log" || true)
		((n >= COUNT)) && break
		sleep 0.05
	done
	t1=$(date +%s.%N)
	c1=$(cpu_ticks "$PID")
	kill "$PID"
	wait "$PID" 2>/dev/null || true
	PID=
	((n >= COUNT)) || { log "$build: only $n of $COUNT routed within 60 s"; exit 1; }
	awk -v t0="$t0" -v t1="$t1" -v c0="$c0" -v c1="$c1" -v hz="$(getconf CLK_TCK)" \
		'BEGIN { printf "%.2f %.2f\n", t1 - t0, (c1 - c0) / hz }'
}

declare -A secs cpus
for r in $(seq "$ROUNDS"); do
	for b in "${builds[@]}"; do
		read -r s c < <(run_round "$b")
		log "round $r/$ROUNDS $b: $COUNT notifications routed ${s}s after the first request, responder CPU ${c}s"
		secs[$b]+="$s "
		cpus[$b]+="$c "
	done
done

echo "# drain: $COUNT new notifications at $RATE req/s, until all are routed (medians of $ROUNDS rounds)"
for b in "${builds[@]}"; do
	s=$(tr ' ' '\n' <<<"${secs[$b]}" | grep . | median_of)
	c=$(tr ' ' '\n' <<<"${cpus[$b]}" | grep . | median_of)
	printf '%-6s wall %6.2f s   responder CPU %6.2f s   CPU per notification %6.0f µs\n' "$b" "$s" "$c" "$(awk -v c="$c" -v n="$COUNT" 'BEGIN { print c * 1e6 / n }')"
done
