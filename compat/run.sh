#!/usr/bin/env bash
# The real-client compatibility suite: installs the clients that are missing, builds dbx,
# starts a fresh EventDBX server in a temporary workspace, runs one program per client,
# and regenerates compat/README.md (the client x feature matrix, with the versions
# detected). Exits 1 if any feature failed, or (with CI=true) if the committed README.md
# differs from the generated one. Its last line is `compat: N passed, M failed`.
#
#   compat/run.sh

set -uo pipefail
compat="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$compat/.." && pwd)"
# shellcheck source=scripts/lib.sh
source "$repo/scripts/lib.sh"
set +e  # keep going past a failing client: every failure is counted and reported
cd "$repo"

started=$SECONDS
python=/usr/bin/python3  # Debian's python: the one python3-psycopg2 / python3-psycopg install into
jdbc_jar=/usr/share/java/postgresql.jar
work="$(mktemp -d "${TMPDIR:-/tmp}/eventdbx-compat.XXXXXX")"
results="$work/results"
mkdir -p "$results"
server_pid=""

cleanup() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null
    for _ in $(seq 100); do
      kill -0 "$server_pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$server_pid" 2>/dev/null
    wait "$server_pid" 2>/dev/null
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

setup_failed() {
  echo "compat: setup failed: $*" >&2
  echo "compat: 0 passed, 1 failed"
  exit 1
}

echo "-- compat: installing missing clients"
ensure_packages postgresql-client python3-psycopg2 python3-psycopg libpostgresql-jdbc-java \
  || setup_failed "apt-get install of the clients"
# pgbench comes with the server package on Debian 12 (no cluster is started for us here).
if [ ! -x /usr/lib/postgresql/15/bin/pgbench ]; then
  ensure_packages postgresql-15 || setup_failed "apt-get install postgresql-15 (pgbench)"
fi
command -v javac >/dev/null || ensure_packages openjdk-17-jdk-headless || setup_failed "JDK 17"
command -v node >/dev/null || ensure_packages nodejs || setup_failed "node"
command -v npm >/dev/null || ensure_packages npm || setup_failed "npm"
if [ ! -f "$compat/node/node_modules/.package-lock.json" ] \
  || [ "$compat/node/package-lock.json" -nt "$compat/node/node_modules/.package-lock.json" ]; then
  (cd "$compat/node" && npm ci --no-audit --no-fund --loglevel=error) || setup_failed "npm ci in compat/node"
fi

echo "-- compat: building dbx"
build_started=$SECONDS
cargo build -q -p dbx --locked || setup_failed "cargo build -p dbx"
echo "   (build: $((SECONDS - build_started)) s)"
dbx="$CARGO_TARGET_DIR/debug/dbx"

echo "-- compat: starting a fresh server"
for var in PGHOST PGHOSTADDR PGPORT PGUSER PGPASSWORD PGPASSFILE PGDATABASE PGSERVICE PGOPTIONS \
  PGSSLMODE PGAPPNAME EVENTDBX_TOKEN; do
  unset "$var"
done
mkdir -p "$work/ws"
port="$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
(cd "$work/ws" && "$dbx" init --ttl 2h >"$work/init.out" 2>&1) || { cat "$work/init.out"; setup_failed "dbx init"; }
(cd "$work/ws" && "$dbx" config --port "$port" >/dev/null) || setup_failed "dbx config --port $port"
(cd "$work/ws" && exec "$dbx" serve start --foreground >"$work/serve.log" 2>&1) &
server_pid=$!
for _ in $(seq 300); do
  grep -q "listening on" "$work/serve.log" 2>/dev/null && break
  kill -0 "$server_pid" 2>/dev/null || break
  sleep 0.1
done
if ! grep -q "listening on 127.0.0.1:$port" "$work/serve.log"; then
  cat "$work/serve.log" >&2
  setup_failed "dbx serve start --foreground did not report listening on 127.0.0.1:$port"
fi
head -n 1 "$work/serve.log"
token="$(cat "$work/ws/.dbx/cli.token")"
(cd "$work/ws" && "$dbx" schema apply --file "$compat/schema.dbx") || setup_failed "dbx schema apply"
reader_json="$(cd "$work/ws" && "$dbx" token generate --group ops --user reader --action aggregate.read --json)" \
  || setup_failed "dbx token generate"
reader_token="$(printf '%s' "$reader_json" | "$python" -c 'import json, sys; print(json.load(sys.stdin)["token"])')" \
  || setup_failed "reading the token from: $reader_json"
export EVENTDBX_HOST=127.0.0.1 EVENTDBX_PORT="$port" EVENTDBX_TOKEN="$token" \
  EVENTDBX_READER_TOKEN="$reader_token" COMPAT_SCHEMA="$compat/schema.dbx"

# run_client NAME COMMAND...: runs one client program, keeps its PASS/FAIL lines.
run_client() {
  local name="$1"
  shift
  local t0=$SECONDS
  echo "-- compat: $name"
  timeout --kill-after=10 120 "$@" >"$results/$name.out" 2>"$results/$name.err" </dev/null
  local rc=$?
  if [ "$rc" -ne 0 ] && ! grep -q "^FAIL $name " "$results/$name.out"; then
    echo "FAIL $name run: exit code $rc without a FAIL line" >>"$results/$name.out"
  fi
  if ! grep -q -E "^(PASS|FAIL) $name " "$results/$name.out"; then
    echo "FAIL $name run: printed no result" >>"$results/$name.out"
  fi
  grep -E "^(PASS|FAIL) " "$results/$name.out"
  if [ "$rc" -ne 0 ] && [ -s "$results/$name.err" ]; then
    echo "   (exit code $rc; last lines of stderr:)"
    tail -n 15 "$results/$name.err" | sed 's/^/   | /'
  fi
  echo "   ($name: $((SECONDS - t0)) s)"
}

run_client psql "$python" "$compat/psql/check.py"
run_client psycopg2 "$python" "$compat/python/psycopg2_test.py"
run_client psycopg3 "$python" "$compat/python/psycopg3_test.py"
run_client node-pg node "$compat/node/pg_test.js"
mkdir -p "$work/java"
run_client pgjdbc bash -c 'javac -nowarn -d "$1" -cp "$2" "$3" && exec java -cp "$1:$2" PgJdbcTest' \
  _ "$work/java" "$jdbc_jar" "$compat/java/PgJdbcTest.java"
run_client replicator "$python" "$compat/python/replicator_test.py"
run_client pgbench "$python" "$compat/pgbench/pgbench_test.py"

echo "-- compat: versions"
versions="$work/versions"
dpkg_version() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || echo "not installed"; }
{
  echo "EventDBX|dbx --version|$("$dbx" --version | awk '{print $2}')"
  echo "psql|psql --version|$(psql --version | sed 's/^psql (PostgreSQL) //')"
  echo "psql|Debian postgresql-client-15|$(dpkg_version postgresql-client-15)"
  echo "pgbench|pgbench --version|$(pgbench --version | sed 's/^pgbench (PostgreSQL) //')"
  echo "pgbench|Debian postgresql-15|$(dpkg_version postgresql-15)"
  "$python" - <<'EOF'
import platform
import psycopg
import psycopg2
import psycopg2.extensions

def libpq(v):
    return f"{v // 10000}.{v % 10000}"

print(f"psycopg 2|psycopg2.__version__|{psycopg2.__version__.split()[0]}")
print(f"psycopg 2|libpq|{libpq(psycopg2.extensions.libpq_version())}")
print(f"psycopg 3|psycopg.__version__|{psycopg.__version__} ({psycopg.pq.__impl__} implementation)")
print(f"psycopg 3|libpq|{libpq(psycopg.pq.version())}")
print(f"psycopg 2, psycopg 3, replicator|Debian python3|{platform.python_version()}")
EOF
  echo "psycopg 2|Debian python3-psycopg2|$(dpkg_version python3-psycopg2)"
  echo "psycopg 3, replicator|Debian python3-psycopg|$(dpkg_version python3-psycopg)"
  node -e '
    const fs = require("fs");
    const v = (p) => JSON.parse(fs.readFileSync(process.argv[1] + "/node_modules/" + p + "/package.json")).version;
    console.log("node-postgres|npm pg|" + v("pg"));
    console.log("node-postgres|npm pg-cursor|" + v("pg-cursor"));
    console.log("node-postgres|node|" + process.versions.node);
  ' "$compat/node"
  echo "pgjdbc|org.postgresql.util.DriverInfo|$(java -cp "$work/java:$jdbc_jar" PgJdbcTest --version 2>/dev/null || echo unknown)"
  echo "pgjdbc|Debian libpostgresql-jdbc-java|$(dpkg_version libpostgresql-jdbc-java)"
  echo "pgjdbc|java|$(java -XshowSettings:properties -version 2>&1 | awk -F' = ' '/java.runtime.version/ {print $2}')"
} >"$versions"
sed 's/|/  /g; s/^/   /' "$versions"

passed="$(cat "$results"/*.out | grep -c '^PASS ')"
failed="$(cat "$results"/*.out | grep -c '^FAIL ')"

"$python" "$compat/matrix.py" "$results" "$versions" "$work/README.md" || {
  echo "compat: could not generate README.md"
  failed=$((failed + 1))
}
if [ -f "$work/README.md" ]; then
  if [ "${CI:-}" = "true" ]; then
    if ! cmp -s "$work/README.md" "$compat/README.md"; then
      echo "FAIL compat README.md: the committed compat/README.md differs from this run's (run compat/run.sh and commit it):"
      diff -u "$compat/README.md" "$work/README.md" | head -n 60
      failed=$((failed + 1))
    fi
  elif ! cmp -s "$work/README.md" "$compat/README.md"; then
    cp "$work/README.md" "$compat/README.md"
    echo "-- compat: updated compat/README.md"
  fi
fi

if [ "$failed" -gt 0 ]; then
  echo "-- compat: failures:"
  cat "$results"/*.out | grep '^FAIL ' | sed 's/^/   /'
fi
echo "-- compat: took $((SECONDS - started)) s"
echo "compat: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
