# `virtioctl metrics` with the NIC and a disk claimed and traffic flowing:
# promtool (Debian's, from /payload/extra/tools) accepts it, the queue
# counters move with the traffic, and the package's timer writes the .prom
# file for the node exporter's textfile collector.
source /payload/cases/lib.sh
promtool=/payload/extra/tools/promtool
[ -x "$promtool" ] || fail "no promtool in the payload"
start_virtiod "[Device]
MACAddress=52:54:00:12:34:01
Claim=yes
InterfaceName=vtnet0

[Device]
Serial=virtiod-blk0
Claim=yes"
trap 'ip netns del twin 2>/dev/null || true; stop_virtiod; rm -rf /var/lib/prometheus' EXIT
net=$(claimed_nic)
[ -n "$net" ] || fail "the NIC was not claimed"
wait_state "$net" running 60
twin_and_local vtnet0
blk=$(virtioctl list --json | jq -r '.[] | select(.type == "block" and .kernel_driver == "vfio-pci") | .address')
[ -n "$blk" ] || fail "the disk was not claimed"
wait_state "$blk" running 60
wait_for "[ -b /dev/disk/by-id/virtiod-virtiod-blk0 ]" 30 || fail "the disk's /dev node did not appear"

# packets received over every receive queue of the NIC, from a metrics text
rx() { awk -v d="$net" '$1 ~ /^virtiod_queue_packets_total\{/ && $1 ~ "device=\"" d "\"" && $1 ~ /queue="receiveq/ { s += $2 } END { print s + 0 }' "$1"; }
virtioctl metrics > /tmp/m1 || fail "virtioctl metrics failed"
"$promtool" check metrics < /tmp/m1 > /tmp/promtool.out 2>&1 || fail "promtool: $(head -n 5 /tmp/promtool.out)"
ping -c 50 -i 0.02 -W 2 10.77.0.2 > /dev/null || fail "no ping through vtnet0"
dev=$(virtioctl status "$blk" --json | jq -r ".endpoints[] | select(.kind == \"$DISK_ENDPOINT\") | .summary")
dd if="$dev" of=/dev/null bs=64k count=64 iflag=direct 2>/dev/null || fail "cannot read $dev"
virtioctl metrics > /tmp/m2 || fail "virtioctl metrics failed"
"$promtool" check metrics < /tmp/m2 > /tmp/promtool.out 2>&1 || fail "promtool (with traffic): $(head -n 5 /tmp/promtool.out)"
[ "$(rx /tmp/m2)" -ge $(( $(rx /tmp/m1) + 50 )) ] || fail "receive packets went $(rx /tmp/m1) → $(rx /tmp/m2) over 50 pings"
reads() { awk -v d="$blk" '$1 ~ /^virtiod_queue_read_bytes_total\{/ && $1 ~ "device=\"" d "\"" { s += $2 } END { print s + 0 }' "$1"; }
[ "$(reads /tmp/m2)" -ge $(( $(reads /tmp/m1) + 4194304 )) ] || fail "disk read bytes went $(reads /tmp/m1) → $(reads /tmp/m2) over 4 MiB read"
for family in virtiod_up virtiod_device_state virtiod_plugin_restarts_total virtiod_plugin_reloads_total virtiod_queue_interrupts_total virtiod_endpoint_info; do
    grep -q "^# TYPE $family " /tmp/m2 || fail "no $family"
done
grep -q "virtiod_device_state{device=\"$net\",state=\"running\",type=\"net\"} 1" /tmp/m2 || fail "NIC not shown running"
grep -q "virtiod_endpoint_info{device=\"$blk\",endpoint=\"$dev\",kind=\"$DISK_ENDPOINT\",type=\"block\"} 1" /tmp/m2 || fail "disk endpoint not shown"
# The timer (enabled by the package) writes the file once the folder exists.
mkdir -p /var/lib/prometheus/node-exporter
systemctl restart virtiod-metrics.timer
wait_for "grep -q '^virtiod_queue_packets_total{device=\"$net\"' /var/lib/prometheus/node-exporter/virtiod.prom" 40 \
    || fail "the timer did not write virtiod.prom: $(systemctl status virtiod-metrics.timer virtiod-metrics.service --no-pager 2>&1 | tail -n 8)"
"$promtool" check metrics < /var/lib/prometheus/node-exporter/virtiod.prom > /tmp/promtool.out 2>&1 || fail "promtool on the .prom file: $(head -n 3 /tmp/promtool.out)"
! ls /var/lib/prometheus/node-exporter/ | grep -q tmp || fail "a temporary file was left beside virtiod.prom"
echo "metrics: $(grep -c '^virtiod_' /tmp/m2) series in $(grep -c '^# TYPE' /tmp/m2) families; rx $(rx /tmp/m1) → $(rx /tmp/m2) packets, disk reads $(reads /tmp/m1) → $(reads /tmp/m2) bytes"
