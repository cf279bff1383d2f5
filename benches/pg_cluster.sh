# Sourced by benches/load.sh and benches/pg_profile.sh: a throwaway
# PostgreSQL cluster as tests/api/pg.rs makes it, in its own folder on its
# own port, run as `postgres` when this runs as root (initdb refuses root),
# with fsync and synchronous_commit on as in production.
#
#   start_pg_cluster DIR [EXTRA_SETTINGS]
#
# DIR must not exist yet; EXTRA_SETTINGS are more postgresql.conf lines.
# Sets pgbin, pg_port, pg_url (user listgate, no TLS, loopback) and pg_stop
# (the command that stops it). Needs free_port from the caller.
start_pg_cluster() {
  local dir=$1 extra=${2:-}
  pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  mkdir "$dir"
  local as_pg=()
  # As `postgres`, from a folder it may enter (not the repository under root's home).
  if [ "$(id -u)" = 0 ]; then chown postgres "$dir"; as_pg=(runuser -u postgres -- env -C "$dir"); fi
  "${as_pg[@]}" "$pgbin/initdb" -D "$dir/data" -U listgate --auth=trust --locale=C -E UTF8 > /dev/null
  pg_port=$(free_port)
  printf "port = %s\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '%s'\nfsync = on\nsynchronous_commit = on\nmax_connections = 100\nshared_buffers = 128MB\n%s" \
    "$pg_port" "$dir" "$extra" | "${as_pg[@]}" tee -a "$dir/data/postgresql.auto.conf" > /dev/null
  "${as_pg[@]}" "$pgbin/pg_ctl" -D "$dir/data" -l "$dir/log" -w start > /dev/null
  pg_stop=("${as_pg[@]}" "$pgbin/pg_ctl" -D "$dir/data" -m immediate stop)
  pg_url="postgres://listgate@127.0.0.1:$pg_port/postgres?sslmode=disable"
}
