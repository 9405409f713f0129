#!/usr/bin/env bash
# bench.sh measures responder's durable webhook ingest against a non-durable
# decode-only baseline (cmd/benchbaseline), in one run, on loopback.
#
# For each of ROUNDS rounds (the order of baseline and responder alternates
# between rounds, to cancel drift on a noisy machine) it:
#   - starts the baseline, warms it up, drives it with the saturation load
#     (CONNS connections for DURATION, cmd/loadgen, and wrk when installed);
#   - starts a fresh responder (SQLite in a temp dir, bearer token, a free
#     loopback port) for each responder phase, so that one phase's ingest
#     backlog does not eat the next phase's CPU:
#       saturation with distinct payloads (loadgen, then wrk on a fresh one),
#       saturation with identical payloads (Alertmanager retries/HA copies),
#       open loop at RATE req/s with distinct, then identical payloads, for p99;
#   - starts the floor (cmd/benchbaseline --floor.storage-path: the baseline's
#     work with responder's decoder, plus an fsynced SQLite group commit of
#     each body, and nothing else) beside the baseline, and drives it with the
#     saturation and the open-loop loads, distinct payloads: what durability
#     alone costs here;
#   - samples the server's VmHWM/VmRSS and utime+stime around each phase,
#     and the machine's steal time (a busy host shows there first);
#   - first, probes the disk alone (cmd/benchbaseline --probe.fsync-dir): an
#     8 KiB write and fsync RATE times a second, whose p99 no receiver that
#     fsyncs before its 200 can be expected to beat here.
# It prints the medians, the ratio responder/baseline, p99 at RATE req/s,
# peak RSS, CPU µs per request and the exact commands.
#
# With ENGINES="sqlite postgres" each round also runs the responder phases
# on PostgreSQL ("responder-pg"): a throwaway cluster (initdb + pg_ctl, fsync
# and synchronous_commit on, as a 200 requires) on a free loopback port, a
# fresh database per phase. The report then adds the ratio PostgreSQL/SQLite
# and the CPU per accepted notification of responder and of the PostgreSQL
# server processes.
#
# Usage: scripts/bench.sh            (about 10 minutes)
#        ROUNDS=1 DURATION=5s scripts/bench.sh   (a quick look)
#        ENGINES="sqlite postgres" scripts/bench.sh
set -euo pipefail

ROUNDS=${ROUNDS:-5}
CONNS=${CONNS:-64}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-1s}
RATE=${RATE:-1000}
RATE_DURATION=${RATE_DURATION:-10s}
PROBE_DURATION=${PROBE_DURATION:-5s}
TOKEN=bench-token-not-a-secret
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PAYLOAD=${PAYLOAD:-$ROOT/testdata/am_v4_firing_10.json}
ENGINES=${ENGINES:-sqlite}
# shellcheck source=scripts/bench-lib.sh
source "$ROOT/scripts/bench-lib.sh"

WORK=$(mktemp -d /tmp/responder-bench.XXXXXX)
PIDS=()
cleanup() {
	local pid
	stop_postgres
	for pid in "${PIDS[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	for pid in "${PIDS[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	if [[ -z ${KEEP:-} ]]; then
		rm -rf "$WORK"
	else
		echo "kept $WORK" >&2
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- build ----------------------------------------------------------------
log "building into $WORK/bin"
# The servers run from copies of what the linker wrote. The linker writes
# its output through a memory mapping, and the page cache keeps such a file
# in large folios, of which the kernel maps whole ones into a process that
# faults on the file: a just-linked responder had 37 MB of its binary
# resident at the end of a saturation phase, a copy of it 32.6-32.8 MB, as
# much as from a cold cache, which is how a deployed binary starts
# (docs/benchmarks.md).
(cd "$ROOT" && go build -o "$WORK/bin/responder.linked" ./cmd/responder &&
	go build -o "$WORK/bin/benchbaseline.linked" ./cmd/benchbaseline &&
	go build -o "$WORK/bin/loadgen" ./cmd/loadgen)
for b in responder benchbaseline; do
	cp "$WORK/bin/$b.linked" "$WORK/bin/$b" && rm "$WORK/bin/$b.linked"
done
BIN=$WORK/bin
HAVE_WRK=
if command -v wrk >/dev/null 2>&1; then
	HAVE_WRK=1
else
	log "wrk not found: only the Go load generator runs (Debian: apt-get install wrk)"
fi

# wrk posts the payload; with distinct=1 each request gets its own groupKey
# and fingerprints (per thread counter), like loadgen --distinct.
cat >"$WORK/post.lua" <<'EOF'
local f = assert(io.open(os.getenv("BENCH_PAYLOAD"), "rb"))
local body = f:read("*a")
f:close()
local distinct = os.getenv("BENCH_DISTINCT") == "1"
local token = os.getenv("BENCH_TOKEN") or ""
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
if token ~= "" then wrk.headers["Authorization"] = "Bearer " .. token end
wrk.body = body

local threads = {}
local tid = 0
function setup(thread)
	tid = tid + 1
	thread:set("id", tid)
	table.insert(threads, thread)
end

-- Split the body once around the values that change, so that a request
-- costs a table.concat, not a pattern match over 10 KB.
local parts, slots = {}, {}
if distinct then
	local pos = 1
	local marks = {}
	local s, e = body:find('"groupKey"%s*:%s*"', 1)
	if s then
		local vend = body:find('"', e + 1, true)
		while body:sub(vend - 1, vend - 1) == "\\" do vend = body:find('"', vend + 1, true) end
		table.insert(marks, { e + 1, vend - 1, "gk" })
	end
	local from = 1
	while true do
		local fs, fe = body:find('"fingerprint"%s*:%s*"', from)
		if not fs then break end
		local vend = body:find('"', fe + 1, true)
		table.insert(marks, { fe + 1, vend - 1, "fp" })
		from = vend + 1
	end
	table.sort(marks, function(a, b) return a[1] < b[1] end)
	for _, m in ipairs(marks) do
		table.insert(parts, body:sub(pos, m[1] - 1))
		table.insert(slots, { kind = m[3], value = body:sub(m[1], m[2]) })
		pos = m[2] + 1
	end
	table.insert(parts, body:sub(pos))
end

local counter = 0
local run = os.time() % 65536
function request()
	if not distinct then return wrk.format() end
	counter = counter + 1
	local out, fp = {}, 0
	for i, s in ipairs(slots) do
		out[#out + 1] = parts[i]
		if s.kind == "gk" then
			out[#out + 1] = s.value .. ':{wrk=\\"' .. run .. "-" .. id .. "-" .. counter .. '\\"}'
		else
			fp = fp + 1
			out[#out + 1] = string.format("%06x%04x%02x%04x", counter % 16777216, run, id % 256, fp)
		end
	end
	out[#out + 1] = parts[#parts]
	return wrk.format(nil, nil, nil, table.concat(out))
end

function done(summary, latency, requests)
	local e = summary.errors
	io.write(string.format("wrk_result requests=%d rps=%.1f p50_ms=%.3f p99_ms=%.3f max_ms=%.3f non2xx=%d socket_errors=%d\n",
		summary.requests, summary.requests / (summary.duration / 1e6),
		latency:percentile(50) / 1e3, latency:percentile(99) / 1e3, latency.max / 1e3,
		e.status, e.connect + e.read + e.write + e.timeout))
end
EOF

# --- PostgreSQL ------------------------------------------------------------
PG_BIN=
PG_DATA=
PG_PORT=
# as_pg runs a PostgreSQL tool as the cluster's owner: initdb refuses root.
as_pg() {
	if [[ $(id -u) -eq 0 ]]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}
start_postgres() {
	PG_BIN=$(find /usr/lib/postgresql -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -1)
	if [[ -z $PG_BIN ]]; then
		PG_BIN=$(dirname "$(readlink -f "$(command -v initdb)")")
	fi
	mkdir -p "$WORK/pg"
	if [[ $(id -u) -eq 0 ]]; then
		chown postgres "$WORK/pg"
		chmod 755 "$WORK"
	fi
	PG_DATA=$WORK/pg/data
	as_pg "$PG_BIN/initdb" --pgdata="$PG_DATA" --username=postgres --auth=trust --encoding=UTF8 --no-locale >/dev/null
	# Durable like SQLite's synchronous=FULL: fsync, synchronous_commit and
	# full_page_writes stay on. The rest sizes the server for this load.
	as_pg tee -a "$PG_DATA/postgresql.conf" >/dev/null <<-CONF
		listen_addresses = '127.0.0.1'
		unix_socket_directories = ''
		max_connections = 100
		shared_buffers = 256MB
		max_wal_size = 2GB
		checkpoint_timeout = 15min
		log_min_messages = warning
	CONF
	for _ in $(seq 20); do
		PG_PORT=$((20000 + RANDOM % 40000))
		(: </dev/tcp/127.0.0.1/$PG_PORT) 2>/dev/null || break
	done
	as_pg "$PG_BIN/pg_ctl" --pgdata="$PG_DATA" --log="$WORK/pg/postgres.log" --wait -o "-p $PG_PORT" start >/dev/null
	log "postgres $("$PG_BIN/postgres" --version | awk '{ print $3 }') on 127.0.0.1:$PG_PORT"
}
stop_postgres() {
	if [[ -n $PG_DATA && -f $PG_DATA/postmaster.pid ]]; then
		as_pg "$PG_BIN/pg_ctl" --pgdata="$PG_DATA" --mode=fast --wait stop >/dev/null 2>&1 || true
	fi
}
# pg_db NAME: a fresh database; prints its DSN.
pg_db() {
	"$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -qAtc "CREATE DATABASE $1" >/dev/null
	echo "postgres://postgres@127.0.0.1:$PG_PORT/$1?sslmode=disable"
}
# pg_cpu_ticks: utime+stime of the PostgreSQL server (the postmaster, its
# live backends and its reaped children).
pg_cpu_ticks() {
	local pm c
	pm=$(head -1 "$PG_DATA/postmaster.pid")
	{
		awk '{ print $14 + $15 + $16 + $17 }' "/proc/$pm/stat"
		for c in $(ps -o pid= --ppid "$pm"); do
			awk '{ print $14 + $15 }' "/proc/$c/stat" 2>/dev/null || true
		done
	} | awk '{ s += $1 } END { print s + 0 }'
}

# --- servers --------------------------------------------------------------
SERVER_PID=
SERVER_URL=
SERVER_LOG=
CMDS=()

# start_baseline [NAME]: the baseline, or with a NAME the floor, on a fresh
# database of its own.
start_baseline() {
	SERVER_LOG=$WORK/baseline.log
	local cmd=("$BIN/benchbaseline" --web.listen-address=127.0.0.1:0)
	if [[ -n ${1:-} ]]; then
		SERVER_LOG=$WORK/$1.log
		cmd+=(--floor.storage-path="$WORK/$1/floor.db")
	fi
	"${cmd[@]}" 2>"$SERVER_LOG" &
	SERVER_PID=$!
	PIDS+=("$SERVER_PID")
	SERVER_URL="http://$(wait_listening "$SERVER_LOG" "$SERVER_PID")/webhook/alertmanager"
	CMDS+=("${cmd[*]}")
}

# start_responder NAME [ENGINE]: a fresh responder with its own database,
# SQLite (the default) or PostgreSQL.
start_responder() {
	local dir=$WORK/$1 dsn
	mkdir -p "$dir"
	dsn=sqlite://$dir/data/responder.db
	if [[ ${2:-sqlite} == postgres ]]; then
		dsn=$(pg_db "$(tr -c 'a-z0-9\n' _ <<<"$1")")
	fi
	responder_config "$dir/responder.yml" "$dsn" "$TOKEN"
	SERVER_LOG=$dir/responder.log
	local cmd=("$BIN/responder" serve --config.file="$dir/responder.yml" --web.listen-address=127.0.0.1:0)
	"${cmd[@]}" 2>"$SERVER_LOG" &
	SERVER_PID=$!
	PIDS+=("$SERVER_PID")
	local addr
	addr=$(wait_listening "$SERVER_LOG" "$SERVER_PID")
	SERVER_URL="http://$addr/webhook/alertmanager"
	wait_ready "$addr" || true
	CMDS+=("${cmd[*]}")
}

stop_server() {
	kill "$SERVER_PID" 2>/dev/null || true
	wait "$SERVER_PID" 2>/dev/null || true
	SERVER_PID=
}

# mem_kb PID FIELD: VmHWM or VmRSS in kB.
mem_kb() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"; }
CLK_TCK=$(getconf CLK_TCK)
# steal_ticks: the machine's steal time so far (/proc/stat), in ticks: the
# time a virtual machine's CPUs were ready to run but the host ran someone
# else. On a shared host it moves every number here, the baseline's too.
steal_ticks() { awk '$1 == "cpu" { print $9; exit }' /proc/stat; }
NCPU=$(nproc)

RESULTS=$WORK/results.tsv
: >"$RESULTS"
# record SERVER PHASE TOOL KEY VALUE
record() { printf '%s\t%s\t%s\t%s\t%s\n' "$@" >>"$RESULTS"; }

# measure SERVER PHASE TOOL -- COMMAND...: run one load, record its numbers
# and the server's CPU and memory.
measure() {
	local server=$1 phase=$2 tool=$3
	shift 4
	local t0 t1 out reqs rps p50 p99 mx errs pg0=0 pg1=0
	if [[ $server == responder-pg ]]; then
		pg0=$(pg_cpu_ticks)
	fi
	t0=$(cpu_ticks "$SERVER_PID")
	local st0 st1 w0 w1
	st0=$(steal_ticks)
	w0=$(date +%s%N)
	out=$("$@")
	w1=$(date +%s%N)
	st1=$(steal_ticks)
	t1=$(cpu_ticks "$SERVER_PID")
	if [[ $server == responder-pg ]]; then
		pg1=$(pg_cpu_ticks)
	fi
	if [[ $tool == loadgen ]]; then
		reqs=$(jq -r .requests <<<"$out")
		rps=$(jq -r '.rps | . * 10 | round / 10' <<<"$out")
		p50=$(jq -r '.p50_ms | . * 1000 | round / 1000' <<<"$out")
		p99=$(jq -r '.p99_ms | . * 1000 | round / 1000' <<<"$out")
		mx=$(jq -r '.max_ms | . * 1000 | round / 1000' <<<"$out")
		errs=$(jq -r '[.errors[]] | add // 0' <<<"$out")
	else
		out=$(grep wrk_result <<<"$out")
		reqs=$(sed 's/.*requests=\([0-9]*\).*/\1/' <<<"$out")
		rps=$(sed 's/.*rps=\([0-9.]*\).*/\1/' <<<"$out")
		p50=$(sed 's/.*p50_ms=\([0-9.]*\).*/\1/' <<<"$out")
		p99=$(sed 's/.*p99_ms=\([0-9.]*\).*/\1/' <<<"$out")
		mx=$(sed 's/.*max_ms=\([0-9.]*\).*/\1/' <<<"$out")
		errs=$(awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^(non2xx|socket_errors)=/) { split($i, a, "="); s += a[2] } } END { print s + 0 }' <<<"$out")
	fi
	local cpu_us=$(((t1 - t0) * 1000000 / CLK_TCK))
	record "$server" "$phase" "$tool" rps "$rps"
	record "$server" "$phase" "$tool" p50_ms "$p50"
	record "$server" "$phase" "$tool" p99_ms "$p99"
	record "$server" "$phase" "$tool" max_ms "$mx"
	record "$server" "$phase" "$tool" errors "$errs"
	if ((reqs > 0)); then
		record "$server" "$phase" "$tool" cpu_us_per_req "$((cpu_us / reqs))"
		if [[ $server == responder-pg ]]; then
			record "$server" "$phase" "$tool" pg_cpu_us_per_req "$(((pg1 - pg0) * 1000000 / CLK_TCK / reqs))"
		fi
	fi
	# Steal time as a share of all CPUs' time during the load.
	local steal_pct=$(((st1 - st0) * 1000000000 / CLK_TCK * 100 / ((w1 - w0) * NCPU)))
	record "$server" "$phase" "$tool" steal_pct "$steal_pct"
	record "$server" "$phase" "$tool" vmhwm_mb "$(($(mem_kb "$SERVER_PID" VmHWM) / 1024))"
	record "$server" "$phase" "$tool" vmrss_mb "$(($(mem_kb "$SERVER_PID" VmRSS) / 1024))"
	# Of the RSS: anonymous memory (heap, stacks, SQLite's page cache) and
	# file-backed pages (the mapped binary, shared with the page cache).
	record "$server" "$phase" "$tool" rssanon_mb "$(($(mem_kb "$SERVER_PID" RssAnon) / 1024))"
	record "$server" "$phase" "$tool" rssfile_mb "$(($(mem_kb "$SERVER_PID" RssFile) / 1024))"
	if [[ $server == responder* ]]; then
		# Notifications applied (incident opened) by the ingest workers while
		# the load ran, against those accepted.
		record "$server" "$phase" "$tool" applied "$(grep -c 'msg="incident opened"' "$SERVER_LOG" || true)"
		record "$server" "$phase" "$tool" accepted "$reqs"
	fi
	log "$server $phase $tool: rps=$rps p50=${p50}ms p99=${p99}ms max=${mx}ms errors=$errs cpu=$((reqs > 0 ? cpu_us / reqs : 0))us/req steal=${steal_pct}%"
}

loadgen() { "$BIN/loadgen" --payload="$PAYLOAD" --json "$@"; }
wrk_post() {
	local distinct=$1 token=$2 url=$3
	BENCH_PAYLOAD=$PAYLOAD BENCH_DISTINCT=$distinct BENCH_TOKEN=$token \
		wrk -t2 -c"$CONNS" -d"$DURATION" -s "$WORK/post.lua" "$url"
}

LG_SAT="--connections=$CONNS --duration=$DURATION"
LG_RATE="--rate=$RATE --connections=$CONNS --duration=$RATE_DURATION"

run_baseline() {
	start_baseline
	loadgen --url="$SERVER_URL" --connections="$CONNS" --duration="$WARMUP" >/dev/null
	# shellcheck disable=SC2086
	measure baseline saturation loadgen -- loadgen --url="$SERVER_URL" $LG_SAT
	if [[ -n $HAVE_WRK ]]; then
		measure baseline saturation wrk -- wrk_post 1 "" "$SERVER_URL"
	fi
	# The same open loop as responder's: what the load generator and the
	# machine cost at that rate on their own (the least any p99 can be).
	# shellcheck disable=SC2086
	measure baseline "open-$RATE" loadgen -- loadgen --url="$SERVER_URL" $LG_RATE
	stop_server
}

# run_floor ROUND: the floor's phases, each on a fresh database.
run_floor() {
	start_baseline "r$1-floor-distinct"
	loadgen --url="$SERVER_URL" --connections="$CONNS" --duration="$WARMUP" --distinct=false >/dev/null
	# shellcheck disable=SC2086
	measure floor saturation-distinct loadgen -- loadgen --url="$SERVER_URL" $LG_SAT
	stop_server
	start_baseline "r$1-floor-rate"
	loadgen --url="$SERVER_URL" --connections="$CONNS" --duration="$WARMUP" --distinct=false >/dev/null
	# shellcheck disable=SC2086
	measure floor "open-$RATE-distinct" loadgen -- loadgen --url="$SERVER_URL" $LG_RATE
	stop_server
}

# run_probe: the disk's own fsync latency, with no server running: an 8 KiB
# write and fsync RATE times a second for PROBE_DURATION, in $WORK (the
# databases' file system). Each 200 of a receiver that fsyncs before it
# waits for at least one such fsync, so the probe's p99 is about the least
# p99 such a receiver can reach on this disk at that rate.
run_probe() {
	local out p50 p99 mx
	out=$("$BIN/benchbaseline" --probe.fsync-dir="$WORK" --probe.rate="$RATE" --probe.duration="$PROBE_DURATION")
	p50=$(jq -r '.p50_ms | . * 1000 | round / 1000' <<<"$out")
	p99=$(jq -r '.p99_ms | . * 1000 | round / 1000' <<<"$out")
	mx=$(jq -r '.max_ms | . * 1000 | round / 1000' <<<"$out")
	record disk fsync-probe probe p50_ms "$p50"
	record disk fsync-probe probe p99_ms "$p99"
	record disk fsync-probe probe max_ms "$mx"
	log "disk fsync-probe: $RATE fsyncs/s for $PROBE_DURATION: p50=${p50}ms p99=${p99}ms max=${mx}ms"
}

# run_responder ROUND [ENGINE]: the responder phases, on SQLite or on
# PostgreSQL (recorded as server "responder-pg").
run_responder() {
	local r=$1 engine=${2:-sqlite} server=responder
	if [[ $engine == postgres ]]; then
		server=responder-pg
		r=$r-pg
	fi
	# Warm-up uses identical payloads: after the first one they are
	# duplicates, so it leaves no ingest backlog behind.
	start_responder "r$r-distinct-loadgen" "$engine"
	loadgen --url="$SERVER_URL" --token="$TOKEN" --connections="$CONNS" --duration="$WARMUP" --distinct=false >/dev/null
	# shellcheck disable=SC2086
	measure "$server" saturation-distinct loadgen -- loadgen --url="$SERVER_URL" --token="$TOKEN" $LG_SAT
	stop_server
	if [[ -n $HAVE_WRK ]]; then
		start_responder "r$r-distinct-wrk" "$engine"
		loadgen --url="$SERVER_URL" --token="$TOKEN" --connections="$CONNS" --duration="$WARMUP" --distinct=false >/dev/null
		measure "$server" saturation-distinct wrk -- wrk_post 1 "$TOKEN" "$SERVER_URL"
		stop_server
	fi
	start_responder "r$r-identical" "$engine"
	loadgen --url="$SERVER_URL" --token="$TOKEN" --connections="$CONNS" --duration="$WARMUP" --distinct=false >/dev/null
	# shellcheck disable=SC2086
	measure "$server" saturation-identical loadgen -- loadgen --url="$SERVER_URL" --token="$TOKEN" $LG_SAT --distinct=false
	stop_server
	start_responder "r$r-rate" "$engine"
	loadgen --url="$SERVER_URL" --token="$TOKEN" --connections="$CONNS" --duration="$WARMUP" --distinct=false >/dev/null
	# shellcheck disable=SC2086
	measure "$server" "open-$RATE-distinct" loadgen -- loadgen --url="$SERVER_URL" --token="$TOKEN" $LG_RATE
	stop_server
	start_responder "r$r-rate-identical" "$engine"
	loadgen --url="$SERVER_URL" --token="$TOKEN" --connections="$CONNS" --duration="$WARMUP" --distinct=false >/dev/null
	# shellcheck disable=SC2086
	measure "$server" "open-$RATE-identical" loadgen -- loadgen --url="$SERVER_URL" --token="$TOKEN" $LG_RATE --distinct=false
	stop_server
}

MACHINE="$NCPU cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(go version | cut -d' ' -f3-)"
log "machine: $MACHINE"
if [[ " $ENGINES " == *" postgres "* ]]; then
	start_postgres
fi
# run_engines ROUND: the responder phases on each engine, in an order that
# alternates between rounds.
run_engines() {
	local e engines
	read -ra engines <<<"$ENGINES"
	if ((${#engines[@]} > 1 && $1 % 2 == 0)); then
		engines=("${engines[1]}" "${engines[0]}")
	fi
	for e in "${engines[@]}"; do
		run_responder "$1" "$e"
	done
}
for r in $(seq "$ROUNDS"); do
	log "round $r/$ROUNDS"
	run_probe
	if ((r % 2)); then
		run_baseline
		run_floor "$r"
		run_engines "$r"
	else
		run_engines "$r"
		run_floor "$r"
		run_baseline
	fi
done

# --- report ---------------------------------------------------------------
# median SERVER PHASE TOOL KEY
median() {
	awk -F'\t' -v s="$1" -v p="$2" -v t="$3" -v k="$4" '$1 == s && $2 == p && $3 == t && $4 == k { print $5 }' "$RESULTS" | median_of
}
maxof() {
	awk -F'\t' -v s="$1" -v k="$2" '$1 == s && $4 == k && $5 > m { m = $5 } END { print m + 0 }' "$RESULTS"
}

echo
echo "# responder benchmark: medians of $ROUNDS rounds ($(date -u +%FT%TZ))"
echo "machine: $MACHINE, payload $(basename "$PAYLOAD") ($(wc -c <"$PAYLOAD") bytes)"
echo
printf '| %-12s | %-22s | %-7s | %9s | %8s | %8s | %8s | %6s | %9s | %8s | %8s | %14s |\n' \
	server phase tool "req/s" "p50 ms" "p99 ms" "max ms" errors "CPU µs/req" "HWM MB" "RSS MB" "applied/accepted"
printf '|%s|\n' "--------------|------------------------|---------|-----------|----------|----------|----------|--------|-----------|----------|----------|-----------------"
awk -F'\t' '{ print $1 "\t" $2 "\t" $3 }' "$RESULTS" | awk '!seen[$0]++' | while IFS=$'\t' read -r s p t; do
	applied=""
	if [[ $s == responder* ]]; then
		applied="$(median "$s" "$p" "$t" applied)/$(median "$s" "$p" "$t" accepted)"
	fi
	printf '| %-12s | %-22s | %-7s | %9s | %8s | %8s | %8s | %6s | %9s | %8s | %8s | %14s |\n' "$s" "$p" "$t" \
		"$(median "$s" "$p" "$t" rps)" "$(median "$s" "$p" "$t" p50_ms)" "$(median "$s" "$p" "$t" p99_ms)" \
		"$(median "$s" "$p" "$t" max_ms)" "$(median "$s" "$p" "$t" errors)" "$(median "$s" "$p" "$t" cpu_us_per_req)" \
		"$(median "$s" "$p" "$t" vmhwm_mb)" "$(median "$s" "$p" "$t" vmrss_mb)" "$applied"
done
echo
# quotient A B: A/B to two decimals, "-" when either is missing.
quotient() {
	if [[ $1 == - || $2 == - ]]; then
		echo "-"
	else
		awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'
	fi
}
# ratio PHASE TOOL [SERVER]: SERVER's (responder's) median req/s over the
# baseline's.
ratio() { quotient "$(median "${3:-responder}" "$1" "$2" rps)" "$(median baseline saturation "$2" rps)"; }
# round_ratios PHASE TOOL [SERVER]: SERVER's (responder's) req/s over the
# baseline's in each round (the k-th measurement of each is round k's), then
# their median. On a machine whose speed drifts during the run, a round's
# pair was measured minutes apart at most; the ratio of the medians above
# pairs the whole run.
round_ratios() {
	local each m
	each=$(awk -F'\t' -v p="$1" -v t="$2" -v s="${3:-responder}" '
		$4 == "rps" && $3 == t && $1 == "baseline" && $2 == "saturation" { b[++nb] = $5 }
		$4 == "rps" && $3 == t && $1 == s && $2 == p { r[++nr] = $5 }
		END { for (i = 1; i <= nb && i <= nr; i++) printf "%.6f\n", r[i] / b[i] }' "$RESULTS")
	m=$(median_of <<<"$each")
	if [[ -z $each || $m == - ]]; then
		echo "-"
	else
		printf '%.2fx (rounds: %s)' "$m" "$(awk '{ printf "%s%.2f", (NR > 1 ? " " : ""), $1 }' <<<"$each")"
	fi
}
echo "ratio responder/baseline, saturation, distinct payloads:  loadgen $(ratio saturation-distinct loadgen)x  wrk $(ratio saturation-distinct wrk)x   (target >= 1.00x)"
echo "  the same, median of each round's own ratio: loadgen $(round_ratios saturation-distinct loadgen)  wrk $(round_ratios saturation-distinct wrk)"
echo "ratio responder/baseline, saturation, identical payloads: loadgen $(ratio saturation-identical loadgen)x"
echo "p99 at $RATE req/s open loop (distinct), from scheduled send time: $(median responder "open-$RATE-distinct" loadgen p99_ms) ms   (target <= 5 ms)"
echo "p99 at $RATE req/s open loop (identical), from scheduled send time: $(median responder "open-$RATE-identical" loadgen p99_ms) ms"
echo "p99 of the baseline at $RATE req/s (what the load generator and the machine cost on their own): $(median baseline "open-$RATE" loadgen p99_ms) ms"
echo "p99 of the disk's own fsync at $RATE a second, nothing else running (the least any receiver that fsyncs before its 200 waits for): $(median disk fsync-probe probe p99_ms) ms (rounds: $(awk -F'\t' '$1 == "disk" && $4 == "p99_ms" { printf "%s%s", (n++ ? " " : ""), $5 }' "$RESULTS"))"
echo "steal time (the host running others on this machine's CPUs), % of the CPUs' time during a phase: median $(awk -F'\t' '$4 == "steal_pct" { print $5 }' "$RESULTS" | median_of), most $(awk -F'\t' '$4 == "steal_pct" && $5 > m { m = $5 } END { print m + 0 }' "$RESULTS")"
echo "floor (benchbaseline --floor.storage-path: decode and an fsynced group commit, nothing else), distinct payloads:"
echo "  ratio floor/baseline, saturation: loadgen $(ratio saturation-distinct loadgen floor)x; median of each round's own ratio: $(round_ratios saturation-distinct loadgen floor)"
echo "  p99 at $RATE req/s: $(median floor "open-$RATE-distinct" loadgen p99_ms) ms; CPU µs/req at saturation: floor $(median floor saturation-distinct loadgen cpu_us_per_req), responder $(median responder saturation-distinct loadgen cpu_us_per_req), baseline $(median baseline saturation loadgen cpu_us_per_req)"
echo "peak RSS (VmHWM) responder: $(maxof responder vmhwm_mb) MB, baseline: $(maxof baseline vmhwm_mb) MB   (target <= 60 MB)"
echo "RSS at the end of a phase, responder, largest: anonymous $(maxof responder rssanon_mb) MB, file-backed (the mapped binary) $(maxof responder rssfile_mb) MB"
if [[ " $ENGINES " == *" postgres "* ]]; then
	# pg_ratio PHASE TOOL: responder-pg/responder req/s.
	pg_ratio() { quotient "$(median responder-pg "$1" "$2" rps)" "$(median responder "$1" "$2" rps)"; }
	echo
	echo "PostgreSQL/SQLite, one replica, same run (target >= 0.70x), and CPU per accepted notification:"
	for p in saturation-distinct saturation-identical "open-$RATE-distinct" "open-$RATE-identical"; do
		echo "  $p (loadgen): $(pg_ratio "$p" loadgen)x req/s; sqlite: responder $(median responder "$p" loadgen cpu_us_per_req) µs;" \
			"postgres: responder $(median responder-pg "$p" loadgen cpu_us_per_req) µs + server $(median responder-pg "$p" loadgen pg_cpu_us_per_req) µs"
	done
	if [[ -n $HAVE_WRK ]]; then
		echo "  saturation-distinct (wrk): $(pg_ratio saturation-distinct wrk)x req/s"
	fi
	echo "  $("$PG_BIN/postgres" --version): fsync, synchronous_commit and full_page_writes on; shared_buffers=256MB, max_wal_size=2GB, checkpoint_timeout=15min"
fi
echo
echo "commands (paths under a temp dir; {addr} is the port the server logged):"
printf '  %s\n' "${CMDS[@]}" | sed "s#$WORK#\$WORK#g; s#/responder-bench\.[A-Za-z0-9]*##g; s#/r[0-9]*-[a-z0-9-]*/#/{phase}/#g" | sort -u
echo "  \$WORK/bin/loadgen --payload=$PAYLOAD --json --url=http://{addr}/webhook/alertmanager [--token=$TOKEN] $LG_SAT [--distinct=false]"
echo "  \$WORK/bin/loadgen --payload=$PAYLOAD --json --url=http://{addr}/webhook/alertmanager --token=$TOKEN $LG_RATE"
echo "  \$WORK/bin/benchbaseline --probe.fsync-dir=\$WORK --probe.rate=$RATE --probe.duration=$PROBE_DURATION"
if [[ -n $HAVE_WRK ]]; then
	echo "  BENCH_PAYLOAD=$PAYLOAD BENCH_DISTINCT=1 [BENCH_TOKEN=$TOKEN] wrk -t2 -c$CONNS -d$DURATION -s \$WORK/post.lua http://{addr}/webhook/alertmanager"
fi
echo "  (each loadgen/wrk run is preceded by a $WARMUP warm-up; responder phases each start a fresh responder and database)"
echo "raw results: $RESULTS${KEEP:+ (kept)}"
