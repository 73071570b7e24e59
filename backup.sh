#!/usr/bin/env bash
# Nightly AuditTrail backup.   cron:  0 2 * * * /path/to/audittrail/backup.sh
#
# Writes a consistent, checked snapshot of the live database (`audittrail backup`: SQLite
# VACUUM INTO + integrity_check + verify, or pg_dump -Fc restored into a scratch database and
# verified) to $BACKUP_DIR, prunes backups older than $KEEP_DAYS days, and records the last
# success in a Prometheus textfile ($PROM_FILE, for the node exporter's textfile collector;
# the `AuditTrailBackupTooOld` alert reads it). Exits non-zero on any failure, leaving the
# previous success time in place so the alert fires.
#
#   BACKUP_MODE=compose  (default) run inside the `api` service of this directory's compose project
#   BACKUP_MODE=local    run the `audittrail` binary here, configured by the environment
#   BACKUP_DIR=/var/backups/audittrail  KEEP_DAYS=30  BACKUP_EXT=db (pgdump for Postgres)
#   COMPOSE="docker compose"  (or docker-compose)  COMPOSE_PROJECT_NAME=…  AUDITTRAIL_BIN=audittrail
#
# Restore: see "Backups and restore" in the README (`audittrail restore FILE`).
set -euo pipefail
cd "$(dirname "$0")"

BACKUP_MODE="${BACKUP_MODE:-compose}"
BACKUP_DIR="${BACKUP_DIR:-/var/backups/audittrail}"
KEEP_DAYS="${KEEP_DAYS:-30}"
BACKUP_EXT="${BACKUP_EXT:-db}"
PROM_FILE="${PROM_FILE:-$BACKUP_DIR/audittrail_backup.prom}"
AUDITTRAIL_BIN="${AUDITTRAIL_BIN:-audittrail}"
if [ -z "${COMPOSE:-}" ]; then
    if docker compose version >/dev/null 2>&1; then COMPOSE="docker compose"; else COMPOSE="docker-compose"; fi
fi

log() { printf '%s backup: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >&2; }
fail() { log "FAILED: $*"; exit 1; }

mkdir -p "$BACKUP_DIR"
name="backup_$(date -u +%Y%m%d_%H%M%S).$BACKUP_EXT"
dest="$BACKUP_DIR/$name"

case "$BACKUP_MODE" in
    compose)
        container=$($COMPOSE ps -q api) || fail "cannot list the compose project's containers"
        [ -n "$container" ] || fail "the api service is not running"
        inside="/app/data/backups/$name"
        $COMPOSE exec -T api mkdir -p /app/data/backups || fail "cannot create /app/data/backups in the api container"
        $COMPOSE exec -T api audittrail backup "$inside" >&2 || fail "audittrail backup failed"
        # `docker cp` works with both compose versions (docker-compose 1.x has no `cp`).
        docker cp "$container:$inside" "$dest.partial" || fail "cannot copy the backup out of the container"
        $COMPOSE exec -T api rm -f "$inside" || log "warning: could not remove $inside in the container"
        mv "$dest.partial" "$dest"
        ;;
    local)
        "$AUDITTRAIL_BIN" backup "$dest" >&2 || fail "audittrail backup failed"
        ;;
    *)
        fail "BACKUP_MODE must be compose or local"
        ;;
esac
[ -s "$dest" ] || fail "$dest is empty"
size=$(stat -c %s "$dest")
log "wrote $dest ($size bytes)"

# Backups older than KEEP_DAYS days go; the one just written stays whatever its mtime.
find "$BACKUP_DIR" -maxdepth 1 -type f -name 'backup_*' ! -name "$name" -mtime +"$KEEP_DAYS" -print -delete |
    while read -r old; do log "pruned $old"; done

# The success record, written atomically (tmp + mv) so a scraper never reads half a file.
tmp="$PROM_FILE.$$.tmp"
cat >"$tmp" <<EOF
# HELP audittrail_backup_last_success_timestamp_seconds When the last backup succeeded.
# TYPE audittrail_backup_last_success_timestamp_seconds gauge
audittrail_backup_last_success_timestamp_seconds $(date +%s)
# HELP audittrail_backup_last_size_bytes Size of the last successful backup.
# TYPE audittrail_backup_last_size_bytes gauge
audittrail_backup_last_size_bytes $size
EOF
mv "$tmp" "$PROM_FILE"
log "done"
