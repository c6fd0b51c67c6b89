#!/bin/sh
# A real S3 server for vmdn's tests: one Ceph monitor, one memstore OSD and
# radosgw, all on 127.0.0.1, no cephx (docs: /work/shared/reference/ceph-rgw-single-node.md).
#   scripts/ceph-rgw.sh start DIR   -> prints "endpoint=URL access=KEY secret=SECRET" (idempotent)
#   scripts/ceph-rgw.sh stop DIR    -> stops the processes it started, removes DIR
# Ports: $RGW_PORT (default 7480) for S3, $MON_PORT (default 3300) for the monitor.
# Debian packages: ceph-mon ceph-osd radosgw ceph-common uuid-runtime.
set -eu
cmd=${1:-}; dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: $0 start|stop DIR" >&2; exit 2; }
RGW_PORT=${RGW_PORT:-7480}; MON_PORT=${MON_PORT:-3300}
ACCESS=vmdntestaccess; SECRET=vmdntestsecret0000000000000000000000000000
conf="$dir/ceph.conf"

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

stop() {
  for p in rgw osd mon; do
    if alive "$dir/$p.pid"; then kill "$(cat "$dir/$p.pid")" 2>/dev/null || true; fi
  done
  for p in rgw osd mon; do
    i=0; while alive "$dir/$p.pid" && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
    if alive "$dir/$p.pid"; then kill -9 "$(cat "$dir/$p.pid")" 2>/dev/null || true; fi
  done
  rm -rf "$dir"
}

if [ "$cmd" = stop ]; then stop; exit 0; fi
[ "$cmd" = start ] || { echo "usage: $0 start|stop DIR" >&2; exit 2; }

say() { echo "endpoint=http://127.0.0.1:$(cat "$dir/rgw.port") access=$ACCESS secret=$SECRET"; }
if alive "$dir/rgw.pid" && alive "$dir/osd.pid" && alive "$dir/mon.pid"; then say; exit 0; fi
[ -d "$dir" ] && stop
mkdir -p "$dir/mon" "$dir/osd" "$dir/rgw" "$dir/run"
echo "$RGW_PORT" > "$dir/rgw.port"
fsid=$(uuidgen)
cat > "$conf" <<EOF
[global]
fsid = $fsid
mon_host = v2:127.0.0.1:$MON_PORT
auth_cluster_required = none
auth_service_required = none
auth_client_required = none
ms_cluster_mode = crc secure
ms_service_mode = crc secure
ms_client_mode = crc secure
ms_mon_cluster_mode = crc secure
ms_mon_service_mode = crc secure
ms_mon_client_mode = crc secure
mon_allow_pool_size_one = true
mon_warn_on_pool_no_redundancy = false
osd_pool_default_size = 1
osd_pool_default_min_size = 1
osd_pool_default_pg_num = 8
osd_crush_chooseleaf_type = 0
osd_objectstore = memstore
memstore_device_bytes = 2147483648
run_dir = $dir/run
log_file = $dir/\$name.log
admin_socket = $dir/run/\$name.asok
[mon.a]
mon_data = $dir/mon
[osd.0]
osd_data = $dir/osd
[client.rgw.a]
rgw_frontends = beast endpoint=127.0.0.1:$RGW_PORT
rgw_data = $dir/rgw
EOF
C="--conf $conf"
ceph-authtool --create-keyring "$dir/mon.keyring" --gen-key -n mon. >/dev/null
monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$MON_PORT]" "$dir/monmap" >/dev/null
ceph-mon $C --mkfs -i a --monmap "$dir/monmap" --keyring "$dir/mon.keyring"
ceph-mon $C -i a --pid-file "$dir/mon.pid" 2>>"$dir/daemons.err"
i=0; until ceph $C --connect-timeout 5 -s >/dev/null 2>&1; do i=$((i+1)); [ $i -lt 60 ] || { echo "ceph-rgw: monitor did not come up" >&2; exit 1; }; sleep 0.5; done
uuid=$(uuidgen)
id=$(ceph $C osd new "$uuid")
ceph-osd $C -i "$id" --mkfs --osd-uuid "$uuid" >/dev/null 2>&1
ceph-osd $C -i "$id" --pid-file "$dir/osd.pid" 2>>"$dir/daemons.err"
radosgw $C -n client.rgw.a --pid-file "$dir/rgw.pid" 2>>"$dir/daemons.err"
i=0; until curl -s -o /dev/null "http://127.0.0.1:$RGW_PORT/"; do i=$((i+1)); [ $i -lt 240 ] || { echo "ceph-rgw: radosgw did not answer" >&2; exit 1; }; sleep 0.5; done
radosgw-admin $C user create --uid=test --display-name=test --access-key=$ACCESS --secret=$SECRET >/dev/null 2>&1 || true
# pid files are written by the daemons after they fork: wait for them
i=0; until [ -s "$dir/rgw.pid" ] && [ -s "$dir/osd.pid" ] && [ -s "$dir/mon.pid" ]; do i=$((i+1)); [ $i -lt 50 ] || break; sleep 0.1; done
say
