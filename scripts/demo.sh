#!/usr/bin/env bash
# `make demo`: the whole incident flow on loopback, in about a minute.
#
# Starts a demo shop (cmd/demo-shop) exposing business metrics, a real
# Prometheus scraping it, a real Alertmanager, and responder. Records a
# deployment, degrades the shop's checkout conversion rate, and narrates:
# the alert firing, the incident opening with its context, the route
# decision (paged or not, and why), the dry-run remediation plan, and the
# resolve once the shop recovers; each read back from the incidents API.
#
# Everything runs on free loopback ports with its state in a temporary
# directory, and stops on exit or Ctrl-C.
#
# Environment:
#   DEMO_KEEP=1          keep everything running after the demo, until Ctrl-C
#   DEMO_BUSINESS_HOURS=always   business hours all week, so the alert pages
#                        (PagerDuty is played by the demo shop); by default
#                        they are Mon-Fri 09:00-18:00 local time
#   PROMETHEUS_BIN, ALERTMANAGER_BIN   binaries to use (default: PATH, Debian's names)
#   NO_COLOR=1           no colours even on a terminal
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEMO_KEEP=${DEMO_KEEP:-0}
DEMO_BUSINESS_HOURS=${DEMO_BUSINESS_HOURS:-}
GO=${GO:-go}
START=$(date +%s)
# How long each wait may take before the demo gives up.
READY_TIMEOUT=30
ALERT_TIMEOUT=60

# ---------------------------------------------------------------- output

if [ -t 1 ] && [ -z "${NO_COLOR:-}" ]; then
  BOLD=$'\e[1m' DIM=$'\e[2m' RED=$'\e[31m' GREEN=$'\e[32m' YELLOW=$'\e[33m' BLUE=$'\e[34m' RESET=$'\e[0m'
else
  BOLD='' DIM='' RED='' GREEN='' YELLOW='' BLUE='' RESET=''
fi

elapsed() { printf '%3ss' "$(($(date +%s) - START))"; }
step() { printf '\n%s%s ==> %s%s\n' "$BOLD$BLUE" "$(elapsed)" "$*" "$RESET"; }
say() { printf '       %s\n' "$*"; }
ok() { printf '       %s%s%s\n' "$GREEN" "$*" "$RESET"; }
note() { printf '       %s%s%s\n' "$DIM" "$*" "$RESET"; }
die() {
  printf '%sdemo: %s%s\n' "$RED" "$*" "$RESET" >&2
  exit 1
}

# pretty prints JSON from stdin: jq, else python3, else as it is.
pretty() {
  if command -v jq >/dev/null 2>&1; then
    jq .
  elif command -v python3 >/dev/null 2>&1; then
    python3 -m json.tool
  else
    cat
    echo
  fi
}

indent() { sed 's/^/       /'; }

# json_section KEY prints the top-level KEY of the JSON object on stdin,
# pretty; without jq or python3, the whole object as it is.
json_section() {
  if command -v jq >/dev/null 2>&1; then
    jq --arg k "$1" '.[$k]'
  elif command -v python3 >/dev/null 2>&1; then
    python3 -m json.tool | awk -v k="$1" '$0 ~ "^    \"" k "\": " { p = 1 } p && (/^}/ || ($0 ~ /^    "/ && $0 !~ "^    \"" k "\": ")) { p = 0 } p'
  else
    cat
    echo
  fi
}

# ---------------------------------------------------------------- prerequisites

find_bin() { # find_bin VAR override name...
  local var=$1 override=$2 name
  shift 2
  if [ -n "$override" ]; then
    [ -x "$override" ] || die "$override is not an executable file"
    printf -v "$var" '%s' "$override"
    return 0
  fi
  for name in "$@"; do
    if command -v "$name" >/dev/null 2>&1; then
      printf -v "$var" '%s' "$(command -v "$name")"
      return 0
    fi
  done
  return 1
}

missing=()
find_bin PROMETHEUS "${PROMETHEUS_BIN:-${RESPONDER_TEST_PROMETHEUS:-}}" prometheus || missing+=(prometheus)
find_bin ALERTMANAGER "${ALERTMANAGER_BIN:-${RESPONDER_TEST_ALERTMANAGER:-}}" prometheus-alertmanager alertmanager || missing+=(prometheus-alertmanager)
if [ ${#missing[@]} -gt 0 ]; then
  die "the demo runs a real Prometheus and Alertmanager; missing: ${missing[*]}.
Install Debian's packages:   sudo apt-get install -y ${missing[*]}
or run scripts/install-test-deps.sh (as root), or set PROMETHEUS_BIN / ALERTMANAGER_BIN."
fi
command -v curl >/dev/null 2>&1 || die "the demo needs curl (apt-get install -y curl)"
command -v "$GO" >/dev/null 2>&1 || die "the demo builds responder and needs Go (see go.mod for the version)"
HAVE_JQ=0
command -v jq >/dev/null 2>&1 && HAVE_JQ=1

# ---------------------------------------------------------------- processes

DIR=$(mktemp -d "${TMPDIR:-/tmp}/responder-demo.XXXXXX")
PIDS=()
NAMES=()
STATUS=0

cleanup() {
  STATUS=${STATUS:-$?}
  trap - EXIT INT TERM
  local i pid
  # Stop what we started, the last started first.
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    kill -TERM "${PIDS[i]}" 2>/dev/null || true
  done
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    pid=${PIDS[i]}
    for _ in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if [ "$STATUS" -ne 0 ] && [ "$STATUS" -ne 130 ] && [ "$STATUS" -ne 143 ]; then
    for f in "$DIR"/logs/*.log; do
      [ -f "$f" ] || continue
      printf '\n%s--- last lines of %s%s\n' "$DIM" "$(basename "$f")" "$RESET" >&2
      tail -n 15 "$f" >&2
    done
  fi
  rm -rf "$DIR"
  [ ${#PIDS[@]} -eq 0 ] || printf '%sdemo: stopped everything it started%s\n' "$DIM" "$RESET"
  exit "$STATUS"
}
trap 'STATUS=$?; cleanup' EXIT
trap 'STATUS=130; echo; cleanup' INT
trap 'STATUS=143; cleanup' TERM

mkdir -p "$DIR/bin" "$DIR/logs" "$DIR/runbooks" "$DIR/prometheus" "$DIR/alertmanager"

# start NAME COMMAND...: runs COMMAND in the background, its output in
# logs/NAME.log.
start() {
  local name=$1
  shift
  "$@" >"$DIR/logs/$name.log" 2>&1 &
  PIDS+=("$!")
  NAMES+=("$name")
}

# alive fails with the log of any started process that has exited.
alive() {
  local i
  for i in "${!PIDS[@]}"; do
    if ! kill -0 "${PIDS[i]}" 2>/dev/null; then
      die "${NAMES[i]} exited unexpectedly (its log is below)"
    fi
  done
}

# wait_until TIMEOUT COMMAND...: polls COMMAND until it succeeds (0) or
# TIMEOUT seconds have passed (1).
wait_until() {
  local deadline=$(($(date +%s) + $1))
  shift
  until "$@" >/dev/null 2>&1; do
    alive
    [ "$(date +%s)" -lt "$deadline" ] || return 1
    sleep 0.5
  done
}

# wait_for DESCRIPTION TIMEOUT COMMAND...: wait_until, or the demo fails.
wait_for() {
  local what=$1 timeout=$2
  shift 2
  wait_until "$timeout" "$@" || die "timed out after ${timeout}s waiting for $what"
}

http_ok() { curl -fsS -o /dev/null --max-time 2 "$1"; }

# USED_PORTS keeps two services from drawing the same port.
USED_PORTS=" "
# free_port VAR: a loopback port nothing listens on right now.
free_port() {
  local p
  for _ in $(seq 1 100); do
    p=$((20000 + RANDOM % 30000))
    case "$USED_PORTS" in *" $p "*) continue ;; esac
    # A refused connection means the port is free.
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      USED_PORTS+="$p "
      printf -v "$1" '%s' "$p"
      return 0
    fi
  done
  die "found no free loopback port"
}

# ---------------------------------------------------------------- responder API

TOKEN=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')

api() { # api PATH: GET from responder's API, authenticated
  curl -fsS --max-time 5 -H "Authorization: Bearer $TOKEN" "$RESPONDER_URL$1"
}

# incident_id prints the id of the demo's incident once responder has it.
incident_id() {
  local body
  body=$(api "/api/v1/incidents") || return 1
  if [ "$HAVE_JQ" = 1 ]; then
    jq -er '[.incidents[] | select(.common_labels.alertname == "CheckoutConversionRateLow") | .id][0] // empty' <<<"$body"
  else
    # Without jq: the first "id" in the list (the demo opens only one).
    grep -o '"id": *[0-9]*' <<<"$body" | sed -n 1p | grep -o '[0-9]*$'
  fi
}

incident_status() { # incident_status ID
  local body
  body=$(api "/api/v1/incidents/$1") || return 1
  if [ "$HAVE_JQ" = 1 ]; then
    jq -r '.status' <<<"$body"
  else
    grep -o '"status": *"[a-z]*"' <<<"$body" | sed -n 1p | grep -o '"[a-z]*"$' | tr -d '"'
  fi
}

is_resolved() { [ "$(incident_status "$1")" = resolved ]; }

# CONSOLE_SEEN is how many lines of responder's log have been shown.
CONSOLE_SEEN=0
# console shows responder's new console and remediation lines, and the
# PagerDuty sink's, since the last call.
console() {
  local log="$DIR/logs/responder.log" n
  n=$(wc -l <"$log")
  if [ "$n" -gt "$CONSOLE_SEEN" ]; then
    sed -n "$((CONSOLE_SEEN + 1)),${n}p" "$log" |
      grep -E 'component=(console|remediation)|msg="(context gathered|incident context)' |
      sed -E 's/^time=[^ ]+ //' |
      sed "s/^/       ${DIM}responder |${RESET} /" || true
    CONSOLE_SEEN=$n
  fi
}

# SINK_SEEN is how many of the PagerDuty sink's lines have been shown.
SINK_SEEN=0
# pagerduty_sink shows the events the demo shop's PagerDuty sink received
# since the last call.
pagerduty_sink() {
  local lines
  lines=$(grep -E 'pagerduty sink' "$DIR/logs/demo-shop.log" || true)
  [ -n "$lines" ] || return 0
  tail -n "+$((SINK_SEEN + 1))" <<<"$lines" | sed -E 's/^time=[^ ]+ //' | sed "s/^/       ${DIM}pagerduty (demo sink) |${RESET} /"
  SINK_SEEN=$(wc -l <<<"$lines")
}

# ---------------------------------------------------------------- build

printf '%sresponder demo%s: a real Prometheus and Alertmanager, a demo shop, and responder, on loopback.\n' "$BOLD" "$RESET"
note "state and logs in $DIR (removed on exit)"

step "Building responder and demo-shop"
(cd "$ROOT" && "$GO" build -o "$DIR/bin/responder" ./cmd/responder && "$GO" build -o "$DIR/bin/demo-shop" ./cmd/demo-shop)
ok "built"

free_port SHOP_PORT
free_port RESPONDER_PORT
free_port AM_PORT
free_port PROM_PORT
SHOP_URL=http://127.0.0.1:$SHOP_PORT
RESPONDER_URL=http://127.0.0.1:$RESPONDER_PORT
AM_URL=http://127.0.0.1:$AM_PORT
PROM_URL=http://127.0.0.1:$PROM_PORT

# ---------------------------------------------------------------- configuration

step "Writing the configuration"
printf '%s\n' "$TOKEN" >"$DIR/webhook-token"
printf 'demo-routing-key-%s\n' "${TOKEN:0:8}" >"$DIR/pagerduty-routing-key"
chmod 600 "$DIR/webhook-token" "$DIR/pagerduty-routing-key"

# The rule is examples/prometheus/rules/conversion.rules.yml's, with two
# changes for the demo: `for: 10s` instead of 15m, so that it fires within
# seconds, and the auto_remediation label that opts it in to the demo
# runbook.
cat >"$DIR/prometheus/demo.rules.yml" <<'EOF'
groups:
  - name: checkout-conversion-demo
    rules:
      - alert: CheckoutConversionRateLow
        expr: avg by (service) (payment_conversion_rate_percent{service="checkout"}) < 94
        for: 10s
        labels:
          severity: critical
          team: payments
          auto_remediation: enabled
        annotations:
          summary: Checkout conversion rate is below the 94% SLO
          description: '{{ $labels.service }} converts {{ printf "%.1f" $value }}% of checkouts (SLO 94%).'
          runbook_url: https://runbooks.example.com/checkout/conversion-rate-low
EOF

cat >"$DIR/prometheus/prometheus.yml" <<EOF
global:
  scrape_interval: 2s
  evaluation_interval: 2s
rule_files: [demo.rules.yml]
alerting:
  alertmanagers:
    - static_configs:
        - targets: ['127.0.0.1:$AM_PORT']
scrape_configs:
  - job_name: shop
    static_configs:
      - targets: ['127.0.0.1:$SHOP_PORT']
  - job_name: responder
    static_configs:
      - targets: ['127.0.0.1:$RESPONDER_PORT']
EOF

cat >"$DIR/alertmanager/alertmanager.yml" <<EOF
route:
  receiver: responder
  group_by: [alertname, service, severity]
  # Seconds instead of examples/alertmanager.yml's 30s and 5m.
  group_wait: 1s
  group_interval: 2s
  repeat_interval: 1h
receivers:
  - name: responder
    webhook_configs:
      - url: $RESPONDER_URL/webhook/alertmanager
        send_resolved: true
        http_config:
          authorization:
            type: Bearer
            credentials_file: $DIR/webhook-token
EOF

# The demo runbook: the shop's /recover endpoint stands in for turning off
# a bad release. responder only plans it (dry_run: true).
cat >"$DIR/runbooks/checkout-conversion-low.yaml" <<EOF
name: checkout-conversion-rollback
description: When checkout conversion stays below its SLO, turn off the latest checkout release, then check that conversion recovered.
match: ['alertname="CheckoutConversionRateLow"']
params:
  service: { label: service, pattern: '^[a-z0-9-]{1,63}\$' }
guards: { cooldown: 30m, max_runs: 2, window: 24h }
steps:
  - name: conversion still below the SLO
    promql_check: { query: 'avg(payment_conversion_rate_percent{service="{{ .Params.service }}"}) < 94' }
  - name: turn off the latest release
    http: { method: POST, url: '$SHOP_URL/recover', expect_status: [200], timeout: 5s }
verify:
  query: 'avg(payment_conversion_rate_percent{service="{{ .Params.service }}"}) >= 94'
  within: 5m
EOF

if [ "$DEMO_BUSINESS_HOURS" = always ]; then
  HOURS_TEXT="all week (DEMO_BUSINESS_HOURS=always)"
  HOURS_YAML="      - weekdays: ['monday:sunday']"
else
  HOURS_TEXT="Mon-Fri 09:00-18:00 local time"
  HOURS_YAML="      - weekdays: ['monday:friday']
        times: [{ start_time: '09:00', end_time: '18:00' }]
        location: Local"
fi

cat >"$DIR/responder.yml" <<EOF
global:
  external_url: $RESPONDER_URL
  prometheus_url: $PROM_URL
  alertmanager_url: $AM_URL
  # The demo shop plays PagerDuty: it logs each event, nothing leaves the machine.
  pagerduty_events_url: $SHOP_URL/pagerduty
storage:
  dsn: sqlite://$DIR/responder.db
  queue:
    poll_interval: 200ms
webhook:
  authorization:
    credentials_file: $DIR/webhook-token
time_intervals:
  - name: business-hours
    time_intervals:
$HOURS_YAML
route:
  receiver: console
  group_by: [alertname, service]
  routes:
    # Critical alerts page during business hours; outside them this route
    # is muted and matching goes on.
    - matchers: ['severity="critical"']
      receiver: pagerduty
      active_time_intervals: [business-hours]
      continue: true
    - receiver: console
receivers:
  # No *_configs: the console line and the incidents API only.
  - name: console
  - name: pagerduty
    pagerduty_configs:
      - routing_key_file: $DIR/pagerduty-routing-key
context:
  deployments:
    lookback: 1h
  promql:
    range: 2m
    step: 5s
    queries:
      - name: conversion rate
        query: 'avg(payment_conversion_rate_percent{service="{{ .CommonLabels.service }}"})'
      - name: failed checkouts per second
        query: 'sum by (code) (rate(http_requests_total{service="{{ .CommonLabels.service }}",handler="/checkout",code!="200"}[30s]))'
      - name: p99 transaction latency
        query: 'histogram_quantile(0.99, sum by (le) (rate(transaction_duration_seconds_bucket{service="{{ .CommonLabels.service }}"}[30s])))'
remediation:
  enabled: true
  dry_run: true
  runbooks_dir: $DIR/runbooks
EOF

"$DIR/bin/responder" check-config --config.file="$DIR/responder.yml" | indent
if command -v promtool >/dev/null 2>&1; then
  promtool check config "$DIR/prometheus/prometheus.yml" >/dev/null || die "promtool rejects the demo's Prometheus config"
fi
if command -v amtool >/dev/null 2>&1; then
  amtool check-config "$DIR/alertmanager/alertmanager.yml" >/dev/null || die "amtool rejects the demo's Alertmanager config"
fi
say "Prometheus scrapes and evaluates every 2s; Alertmanager groups within 1-2s."
say "Demo timings: CheckoutConversionRateLow fires after ${BOLD}10s${RESET} below the 94% SLO"
say "(examples/prometheus/rules/conversion.rules.yml waits 15m), so the demo takes about a minute."
say "Route: severity=critical pages PagerDuty only within business-hours ($HOURS_TEXT)."
say "Remediation: enabled, ${BOLD}dry_run: true${RESET}; runbook checkout-conversion-rollback."

# ---------------------------------------------------------------- start

step "Starting the demo shop, responder, Alertmanager and Prometheus"
start demo-shop "$DIR/bin/demo-shop" --web.listen-address="127.0.0.1:$SHOP_PORT"
wait_for "the demo shop" "$READY_TIMEOUT" http_ok "$SHOP_URL/-/healthy"
ok "demo shop     $SHOP_URL/metrics"
start responder "$DIR/bin/responder" serve --config.file="$DIR/responder.yml" --web.listen-address="127.0.0.1:$RESPONDER_PORT"
wait_for "responder" "$READY_TIMEOUT" http_ok "$RESPONDER_URL/-/ready"
ok "responder     $RESPONDER_URL"
start alertmanager "$ALERTMANAGER" --config.file="$DIR/alertmanager/alertmanager.yml" \
  --storage.path="$DIR/alertmanager/data" --web.listen-address="127.0.0.1:$AM_PORT" --web.external-url="$AM_URL" \
  --cluster.listen-address=
wait_for "Alertmanager" "$READY_TIMEOUT" http_ok "$AM_URL/-/ready"
ok "Alertmanager  $AM_URL"
start prometheus "$PROMETHEUS" --config.file="$DIR/prometheus/prometheus.yml" \
  --storage.tsdb.path="$DIR/prometheus/data" --web.listen-address="127.0.0.1:$PROM_PORT" --web.external-url="$PROM_URL"
wait_for "Prometheus" "$READY_TIMEOUT" http_ok "$PROM_URL/-/ready"
ok "Prometheus    $PROM_URL"

conversion() { # the conversion rate Prometheus has, rounded
  curl -fsS --max-time 2 -G "$PROM_URL/api/v1/query" \
    --data-urlencode 'query=round(avg(payment_conversion_rate_percent{service="checkout"}), 0.1)' |
    grep -o '"value":\[[^]]*\]' | sed -E 's/.*,"([^"]*)"\]/\1/'
}
has_conversion() { [ -n "$(conversion)" ]; }
wait_for "Prometheus to scrape the shop" "$READY_TIMEOUT" has_conversion
say "checkout conversion rate: $(conversion)% (healthy; the SLO is 94%)"

# ---------------------------------------------------------------- the incident

step "Recording a deployment of checkout (POST /api/v1/deployments)"
curl -fsS --max-time 5 -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
  --data '{"service":"checkout","environment":"demo","version":"v2.4.1","commit":"8f3c2d1","author":"ci","url":"https://ci.example.com/checkout/builds/1042"}' \
  "$RESPONDER_URL/api/v1/deployments" | indent
say "it will show in the context of checkout's next incident."

step "Degrading the shop: checkout conversion drops to about 82%"
curl -fsS --max-time 5 -XPOST "$SHOP_URL/degrade?minutes=10" >/dev/null
say "POST $SHOP_URL/degrade?minutes=10"

alert_state() { # pending, firing or nothing, from Prometheus
  curl -fsS --max-time 2 "$PROM_URL/api/v1/alerts" | grep -o '"state":"[a-z]*"' | sed -n 1p | cut -d'"' -f4
}
is_pending_or_firing() { [ -n "$(alert_state)" ]; }
is_firing() { [ "$(alert_state)" = firing ]; }
wait_for "the alert to go pending" "$ALERT_TIMEOUT" is_pending_or_firing
say "Prometheus: CheckoutConversionRateLow is $(alert_state) (conversion $(conversion)%)"
wait_for "the alert to fire" "$ALERT_TIMEOUT" is_firing
say "Prometheus: CheckoutConversionRateLow is firing (conversion $(conversion)%) -> Alertmanager -> responder"

has_incident() { [ -n "$(incident_id)" ]; }
wait_for "responder to open the incident" "$ALERT_TIMEOUT" has_incident
ID=$(incident_id)

step "Incident #$ID opened"
# The route decision, the context and the remediation plan are jobs that
# run after the webhook is acknowledged; give them a few seconds.
detail() { api "/api/v1/incidents/$ID"; }
if [ "$HAVE_JQ" = 1 ]; then
  complete() {
    detail | jq -e '(.decisions // [] | any(.kind == "route")) and (.context.sections // [] | length > 0)
      and (.remediation // [] | length > 0)'
  }
  wait_until 15 complete || note "(not everything was recorded within 15s; showing what there is)"
else
  sleep 5
fi
console
note "GET $RESPONDER_URL/api/v1/incidents/$ID"

step "Route decision: paged or not, and why"
if [ "$HAVE_JQ" = 1 ]; then
  detail | jq -r '.decisions // [] | map(select(.kind == "route")) | if length == 0 then "no route decision recorded yet" else .[0] |
      (if (.detail.receivers // [] | index("pagerduty")) then "PAGED: PagerDuty was triggered" else "NOT PAGED: no PagerDuty receiver was chosen" end),
      "receivers: \(.detail.receivers // [] | join(", "))",
      "why:",
      (.detail.trace // [] | .[] | "  \(.path) -> \(.receiver): \(.reason)")
    end' | indent
  detail | jq '.decisions // [] | map(select(.kind == "route") | {kind, summary, receivers: .detail.receivers, at})' | indent
else
  detail | json_section decisions | indent
fi
note "now: $(date '+%a %H:%M %Z'); critical alerts page within business-hours: $HOURS_TEXT."
PAGED=0
if [ "$HAVE_JQ" = 1 ] && detail | jq -e '.decisions // [] | any(.kind == "route" and (.detail.receivers // [] | index("pagerduty")))' >/dev/null; then
  PAGED=1
  # The page is a job of its own, delivered just after the decision.
  wait_until 15 grep -q 'event_action=trigger' "$DIR/logs/demo-shop.log" || note "(no PagerDuty event arrived within 15s)"
  console
  pagerduty_sink
elif [ "$DEMO_BUSINESS_HOURS" != always ]; then
  note "to see the page at any hour: DEMO_BUSINESS_HOURS=always make demo"
fi

step "Context gathered for the incident"
if [ "$HAVE_JQ" = 1 ]; then
  # Each snapshot with its current value and a sparkline of its chart.
  detail | jq -r '
    def spark: map(.v) as $v | ($v | min) as $lo | ($v | max) as $hi
      | $v | map(if $hi == $lo then 3 else ((. - $lo) / ($hi - $lo) * 7 | floor) end)
      | map(["▁","▂","▃","▄","▅","▆","▇","█"][.]) | join("");
    def num: if . == null then "-" elif (. | fabs) >= 10 or . == (. | floor) then (. * 10 | round / 10 | tostring)
      else (. * 1000 | round / 1000 | tostring) end;
    if .context == null then "no context recorded (the context section gathers nothing)" else
    "gathered in \(.context.duration_ms)ms",
    (.context.sections[] |
      "\(.source): \(.status)\(if .error then " (\(.error))" else "" end)",
      (.deployments // [] | .[] | "  deployed \(.service) \(.version) (\(.commit)) by \(.author) at \(.deployed_at[11:19]) UTC"),
      (.logs // [] | .[] | "  \(.line)"),
      (.snapshots // [] | .[] |
        "  \(.name): \(if .error then .error else (.values // [] | map("\(.labels | if . == "{}" then "" else . + " " end)\(.value | num)") | join(", ")) end)",
        (.series // [] | .[] | select((.points | length) > 1) | "      \(.points | spark)  \(.labels | if . == "{}" then "" else . end)")))
    end' | indent
else
  detail | json_section context | indent
fi

step "Dry-run remediation plan"
if [ "$HAVE_JQ" = 1 ]; then
  detail | jq -r '.remediation // [] | if length == 0 then "no remediation run recorded" else .[] |
      "runbook \(.runbook) for \(.target): \(.state)\(if .dry_run then " (dry run)" else "" end)",
      "  \(.reason // "")",
      (.audit // [] | map(select(.phase == "plan")) | .[] | "  \(.step_index + 1). \(.step) [\(.kind)]: \(.input)  -> \(.outcome)")
    end' | indent
  detail | jq '.remediation // [] | map({runbook, target, params, state, dry_run, reason})' | indent
else
  detail | json_section remediation | indent
fi

# ---------------------------------------------------------------- the resolve

step "Recovering the shop"
curl -fsS --max-time 5 -XPOST "$SHOP_URL/recover" >/dev/null
say "POST $SHOP_URL/recover"
resolved() { is_resolved "$ID"; }
wait_for "the incident to resolve" "$ALERT_TIMEOUT" resolved
if [ "$PAGED" = 1 ]; then
  wait_until 15 grep -q 'event_action=resolve' "$DIR/logs/demo-shop.log" || note "(PagerDuty was not told of the resolve within 15s)"
fi
console
pagerduty_sink
step "Incident #$ID resolved (conversion $(conversion)%)"
if [ "$HAVE_JQ" = 1 ]; then
  detail | jq '{id, status, opened_at, updated_at, firing_alerts, resolved_alerts, history: (.history // [] | map({status, at}))}' | indent
else
  detail | pretty | sed -n '1,40p' | indent
fi

printf '\n%sDemo complete in %ss.%s\n' "$BOLD$GREEN" "$(($(date +%s) - START))" "$RESET"
if [ "$DEMO_KEEP" = 1 ]; then
  say "Prometheus    $PROM_URL/alerts"
  say "Alertmanager  $AM_URL"
  say "responder     curl -H \"Authorization: Bearer \$(cat $DIR/webhook-token)\" $RESPONDER_URL/api/v1/incidents"
  say "demo shop     $SHOP_URL/  (curl -XPOST '$SHOP_URL/degrade?minutes=5', curl -XPOST $SHOP_URL/recover)"
  say "logs          $DIR/logs/"
  say "${YELLOW}DEMO_KEEP=1: everything keeps running; Ctrl-C stops it.${RESET}"
  while true; do
    sleep 2
    alive
    console
  done
fi
say "Run with DEMO_KEEP=1 to keep it all running and explore it: Prometheus, Alertmanager, the incidents API."
