#!/bin/bash
# The physical floor of a from-scratch converge: the same end state `sliceops deploy` builds
# for one instance, done with the plainest commands in one go (no facts, no checks, no
# idempotence): create and start the cluster, write the secrets, ONE psql session for every
# role, database, schema file, ledger row, grant and gateway row, then one `docker run` per
# slice with the deploy's flags (sliceops/operations/docker.py run_command), then the monitor.
#
#   bench/floor.sh RENDERED_DIR
#
# RENDERED_DIR/floor.env (written by bench/floor_converge.py from the same inventory) names
# the instance, ports and paths; RENDERED_DIR also holds the configuration files the deploy
# would render from templates/. Prints "phase <name> <seconds>" per step.
set -eu  # no pipefail: `tr </dev/urandom | head` ends tr with SIGPIPE by design
R=$1
# shellcheck source=/dev/null
. "$R/floor.env"   # INSTANCE N PG_VERSION PG_PORT SUBNET GATEWAY_ADDR PORT_BASE PORT_STEP IMAGE ...
ROOT=$(cd "$(dirname "$0")/.." && pwd)
ETC=/etc/sliceops/$INSTANCE
SD=$ETC/secrets
PGETC=/etc/postgresql/$PG_VERSION/$INSTANCE
START=$(date +%s.%N)
T=$START
phase() { local now; now=$(date +%s.%N); echo "phase $1 $(echo "$now - $T" | bc)"; T=$now; }

# --- the cluster, configured as the deploy's templates say, started
pg_createcluster "$PG_VERSION" "$INSTANCE" --port "$PG_PORT" --start-conf auto >/dev/null
sh "$R/tls.sh" >/dev/null && install -m 644 "$ETC/tls/ca.crt" "$ETC/postgresql-ca.crt"  # the CA each slice mounts
install -m 640 -o postgres -g postgres "$R/50-sliceops.conf" "$PGETC/conf.d/50-sliceops.conf"
install -m 640 -o postgres -g postgres "$R/pg_hba.conf" "$PGETC/pg_hba.conf"
install -m 640 -o postgres -g postgres "$R/pg_ident.conf" "$PGETC/pg_ident.conf"
pg_ctlcluster "$PG_VERSION" "$INSTANCE" start
phase cluster

# --- secrets: 32 alphanumerics per login role, and each slice's DATABASE_URL file
umask 077
install -d -m 0755 /etc/sliceops "$ETC"
install -d -m 0700 "$SD"
roles="$GATEWAY_ROLE $SLICE_ROLE"
for i in $(seq 1 "$N"); do roles="$roles wa_slice_$i"; done
for r in $roles; do tr -dc A-Za-z0-9 </dev/urandom | head -c 32 >"$SD/$r.password"; done
for i in $(seq 1 "$N"); do
    printf 'DATABASE_URL=postgresql://wa_slice_%s:%s@%s:%s/wa_slice_%s\n' \
        "$i" "$(cat "$SD/wa_slice_$i.password")" "$GATEWAY_ADDR" "$PG_PORT" "$i" >"$SD/wa_slice_$i.env"
done
umask 022
phase secrets

# --- one psql session: roles, databases, every schema file, ledger, grants, gateway rows
ledger_rows() {  # kind -> VALUES rows of (version, name, sha256) for sql/<kind>/*.sql
    sha256sum "$ROOT"/sql/"$1"/[0-9]*.sql | while read -r sum path; do
        f=$(basename "$path" .sql); printf "('%s', '%s', '%s')," "${f%%_*}" "${f#*_}" "$sum"
    done | sed 's/,$//'
}
LEDGER="CREATE SCHEMA sliceops; REVOKE ALL ON SCHEMA sliceops FROM PUBLIC;
CREATE TABLE sliceops.schema_migrations (version text PRIMARY KEY, name text NOT NULL, checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now());"
{
    echo "SET log_statement = 'none';"
    echo "CREATE ROLE sliceops_monitor LOGIN;"
    for r in $roles; do
        echo "\\set pw '$(cat "$SD/$r.password")'"  # read by root here: psql runs as postgres
        echo "CREATE ROLE \"$r\" LOGIN PASSWORD :'pw';"
    done
    echo "CREATE DATABASE \"$GATEWAY_DB\" OWNER \"$GATEWAY_ROLE\";"
    echo "REVOKE CONNECT, TEMPORARY ON DATABASE \"$GATEWAY_DB\" FROM PUBLIC;"
    echo "GRANT CONNECT ON DATABASE \"$GATEWAY_DB\" TO sliceops_monitor;"
    for i in $(seq 1 "$N"); do
        echo "CREATE DATABASE wa_slice_$i OWNER \"$SLICE_ROLE\";"
        echo "REVOKE CONNECT, TEMPORARY ON DATABASE wa_slice_$i FROM PUBLIC;"
        echo "GRANT CONNECT ON DATABASE wa_slice_$i TO wa_slice_$i;"
    done
    echo "\\c $GATEWAY_DB"
    echo "BEGIN; $LEDGER SET ROLE \"$GATEWAY_ROLE\";"
    for f in "$ROOT"/sql/gateway/[0-9]*.sql; do echo "\\i $f"; done
    echo "RESET ROLE;"
    echo "INSERT INTO sliceops.schema_migrations (version, name, checksum) VALUES $(ledger_rows gateway);"
    echo "GRANT USAGE ON SCHEMA gateway TO sliceops_monitor; GRANT SELECT ON gateway.slices TO sliceops_monitor;"
    echo "GRANT UPDATE (last_health_at, wa_connected, wa_phone, storage_bytes) ON gateway.slices TO sliceops_monitor;"
    echo "GRANT SELECT, INSERT, DELETE ON gateway.telemetry, gateway.server_telemetry TO sliceops_monitor;"
    echo "GRANT USAGE ON ALL SEQUENCES IN SCHEMA gateway TO sliceops_monitor;"
    echo "INSERT INTO gateway.slices (id, port, status) SELECT i, $PORT_BASE + $PORT_STEP * (i - 1), 'available' FROM generate_series(1, $N) i;"
    echo "SELECT setval(pg_get_serial_sequence('gateway.slices', 'id'), $N) \\g /dev/null"
    echo "COMMIT;"
    slice_ledger=$(ledger_rows slice)
    for i in $(seq 1 "$N"); do
        echo "\\c wa_slice_$i"
        echo "BEGIN; $LEDGER SET ROLE \"$SLICE_ROLE\";"
        for f in "$ROOT"/sql/slice/[0-9]*.sql; do echo "\\i $f"; done
        echo "RESET ROLE;"
        echo "INSERT INTO sliceops.schema_migrations (version, name, checksum) VALUES $slice_ledger;"
        echo "GRANT USAGE ON SCHEMA public TO wa_slice_$i;"
        echo "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO wa_slice_$i;"
        echo "GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO wa_slice_$i;"
        echo "ALTER DEFAULT PRIVILEGES FOR ROLE \"$SLICE_ROLE\" IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO wa_slice_$i;"
        echo "ALTER DEFAULT PRIVILEGES FOR ROLE \"$SLICE_ROLE\" IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO wa_slice_$i;"
        echo "COMMIT;"
    done
} | runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -p "$PG_PORT" -d postgres >/dev/null
phase psql

# --- the slice network and one container per slice, with the deploy's flags
docker network create --driver bridge --subnet "$SUBNET" --gateway "$GATEWAY_ADDR" \
    -o com.docker.network.bridge.enable_icc=false -o com.docker.network.bridge.name="$BRIDGE" \
    --label sliceops.instance="$INSTANCE" "$NETWORK" >/dev/null
phase network
dirs=""
for i in $(seq 1 "$N"); do dirs="$dirs $DATA_DIR/$i"; done
# shellcheck disable=SC2086
install -d -o 10001 -g sliceops-monitor -m 2750 $dirs
for i in $(seq 1 "$N"); do
    port=$((PORT_BASE + PORT_STEP * (i - 1)))
    docker run -d --name "$PREFIX$i" --label sliceops.instance="$INSTANCE" --label sliceops.slice="$i" \
        --env SLICE_ID="$i" --env PORT="$port" --env-file "$SD/wa_slice_$i.env" \
        --publish "127.0.0.1:$port:$port" --network "$NETWORK" --user 10001:10001 --read-only \
        --tmpfs /tmp --volume "$DATA_DIR/$i:/data" --security-opt no-new-privileges --cap-drop ALL \
        --memory "$MEMORY" --cpus "$CPUS" --pids-limit "$PIDS" --log-driver json-file \
        --log-opt max-size=10m --log-opt max-file=3 --health-interval "${HEALTH_INTERVAL}s" \
        --restart unless-stopped "$IMAGE" >/dev/null
done
phase containers

# --- the monitor: its virtualenv, configuration and init script, started
base=/opt/sliceops/$INSTANCE
mkdir -p "$base/monitor-src"
cp -r "$ROOT/monitor/." "$base/monitor-src/"
/usr/bin/python3 -m venv --system-site-packages "$base/monitor-venv"
"$base/monitor-venv/bin/pip" install -q --no-deps --no-index --no-build-isolation "$base/monitor-src"
install -m 640 -o root -g sliceops-monitor "$R/monitor.json" "$ETC/monitor.json"
install -m 755 "$R/monitor.init" "/etc/init.d/sliceops-monitor-$INSTANCE"
update-rc.d "sliceops-monitor-$INSTANCE" defaults >/dev/null
"/etc/init.d/sliceops-monitor-$INSTANCE" start >/dev/null
phase monitor
echo "phase total $(echo "$(date +%s.%N) - $START" | bc)"
