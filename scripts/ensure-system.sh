#!/usr/bin/env bash
# Installs the system servers liftline runs on, when they are missing.
# Root: apt-get installs Debian's rabbitmq-server and redis-server.
# Not root: says exactly what to install and fails.
set -euo pipefail

need=()
[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || need+=(rabbitmq-server)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
py=$(command -v python3.11 || command -v python3 || true)
if [ -n "$py" ] && ! "$py" -c 'import ensurepip, venv' >/dev/null 2>&1; then
  need+=(python3-venv)
fi
if [ "${LIFTLINE_WITH_WRK:-0}" = 1 ]; then
  command -v wrk >/dev/null 2>&1 || need+=(wrk)
fi

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi

if [ -n "${LIFTLINE_TEST_AMQP_URL:-}" ] && [ -n "${LIFTLINE_TEST_REDIS_URL:-}" ] \
   && [ "${need[*]}" != "wrk" ]; then
  echo "ensure-system: ${need[*]} missing, but LIFTLINE_TEST_*_URL are set; using those servers."
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "liftline needs these Debian packages: ${need[*]}" >&2
  echo "Install them with:  sudo apt-get update && sudo apt-get install -y ${need[*]}" >&2
  exit 1
fi

command -v apt-get >/dev/null 2>&1 || {
  echo "No apt-get here: install ${need[*]} with your system's package manager." >&2
  exit 1
}
echo "ensure-system: installing ${need[*]} with apt-get"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${need[@]}"
