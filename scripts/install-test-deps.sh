#!/usr/bin/env bash
# Installs what the test suite runs for real: Alertmanager and Prometheus
# (with amtool and promtool) and PostgreSQL, from Debian's packages. It does
# nothing when they are already there, installs them with apt-get when run as
# root, and otherwise says what to install.
set -euo pipefail

missing=()
command -v prometheus-alertmanager >/dev/null 2>&1 || command -v alertmanager >/dev/null 2>&1 || missing+=(prometheus-alertmanager)
command -v amtool >/dev/null 2>&1 || missing+=(prometheus-alertmanager)
command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || command -v initdb >/dev/null 2>&1 || missing+=(postgresql)

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
# Unique package names, in order.
pkgs=$(printf '%s\n' "${missing[@]}" | awk '!seen[$0]++' | tr '\n' ' ')

if [ "$(id -u)" -ne 0 ]; then
  echo "The tests need these Debian packages, which are missing: $pkgs" >&2
  echo "Install them as root:  apt-get update && apt-get install -y $pkgs" >&2
  echo "or point RESPONDER_TEST_ALERTMANAGER / RESPONDER_TEST_PROMETHEUS at the binaries." >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "The tests need $pkgs and this machine has no apt-get; install them by hand." >&2
  exit 1
fi
echo "installing test dependencies: $pkgs"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086 # word splitting of the package list is intended.
apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
# The Debian packages start services where an init system runs; the tests
# start their own instances on free ports, so stop any that came up.
for svc in prometheus prometheus-alertmanager postgresql; do
  service "$svc" stop >/dev/null 2>&1 || true
done
echo "test dependencies installed"
