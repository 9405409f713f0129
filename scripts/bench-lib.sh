# bench-lib.sh: what scripts/bench.sh and scripts/bench-drain.sh share.
# Source it; it defines functions only.

log() { printf '%s %s\n' "$(date +%T)" "$*" >&2; }

# wait_listening LOGFILE PID: print the address from the "listening" line.
wait_listening() {
	local logf=$1 pid=$2 addr=
	for _ in $(seq 100); do
		addr=$(grep -o 'msg=listening address=[0-9.:]*' "$logf" 2>/dev/null | head -1 | sed 's/.*address=//') || true
		if [[ -n $addr ]]; then
			echo "$addr"
			return 0
		fi
		if ! kill -0 "$pid" 2>/dev/null; then
			break
		fi
		sleep 0.1
	done
	log "server did not start; its log:"
	cat "$logf" >&2
	return 1
}

# wait_ready ADDR: wait (up to 5 s) until responder at ADDR is ready.
wait_ready() {
	for _ in $(seq 50); do
		curl -fsS -o /dev/null "http://$1/-/ready" && return 0
		sleep 0.1
	done
	return 1
}

# responder_config FILE DSN TOKEN: a config with that storage, bearer token
# and the console receiver.
responder_config() {
	cat >"$1" <<CONFIG
storage:
  dsn: $2
webhook:
  authorization:
    credentials: $3
route:
  receiver: console
receivers:
  - name: console
CONFIG
}

# cpu_ticks PID: utime+stime in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# median_of: the median of the numbers on stdin, one a line ("-" for none).
median_of() {
	sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) { print "-"; exit } if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
