#!/usr/bin/env bash
# Installs the system servers liftline runs on, when they are missing.
# Root: apt-get installs Debian's rabbitmq-server and redis-server.
# Not root: says exactly what to install and fails.
# LIFTLINE_WITH_CHROMIUM=1 (make test): Debian's chromium too, for the dashboard's
# browser test. It is optional: without root it is not installed, and the test is
# skipped with a banner in the run's summary (never silently).
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
optional=()
if [ "${LIFTLINE_WITH_CHROMIUM:-0}" = 1 ] && [ ! -x /usr/bin/chromium ]; then
  optional+=(chromium)
fi

if [ ${#optional[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    need+=("${optional[@]}")
  else
    echo "ensure-system: WARNING: ${optional[*]} not installed (needs root:" \
         "sudo apt-get install -y ${optional[*]}); the dashboard's browser test" \
         "will be SKIPPED." >&2
  fi
fi

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi

if [ -n "${LIFTLINE_TEST_AMQP_URL:-}" ] && [ -n "${LIFTLINE_TEST_REDIS_URL:-}" ]; then
  rest=()
  for package in "${need[@]}"; do
    case "$package" in
      rabbitmq-server|redis-server) ;;
      *) rest+=("$package") ;;
    esac
  done
  if [ ${#rest[@]} -ne ${#need[@]} ]; then
    echo "ensure-system: servers missing, but LIFTLINE_TEST_*_URL are set; using those servers."
  fi
  [ ${#rest[@]} -eq 0 ] && exit 0
  need=("${rest[@]}")
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
