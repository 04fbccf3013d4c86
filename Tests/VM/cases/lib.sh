# Helpers for in-guest cases. A case is a bash script: exit 0 = ok; on
# failure its last output line is the reason shown on the host.
set -euo pipefail
VARIANT=$(cat /payload/variant 2>/dev/null || echo default)
# has_variant NAME: whether this run's device set includes variant NAME
# (run.sh --variant takes several, comma-separated).
has_variant() { case ",$VARIANT," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }
# The kernel driver that lends claimed devices to virtiod: uio_pci_generic on
# the VM without an IOMMU (Debian's kernels have no VFIO no-IOMMU mode).
LENT_DRIVER=vfio-pci
has_variant noiommu && LENT_DRIVER=uio_pci_generic

# A line a mode script (bench, profile) shows on the host: run.sh prints
# VIRTIOD-DEMO lines from the serial console without the prefix.
say() { echo "VIRTIOD-DEMO $*"; }

# (The reason is kept in FAIL_REASON for EXIT traps that print more and then repeat it last.)
fail() { FAIL_REASON="$*"; echo "$*"; exit 1; }

# PCI addresses of virtio functions with a given modern device ID (e.g. 1042),
# or its transitional ID in the transitional variant.
virtio_functions() {
    local id=$1 legacy
    case $id in 1041) legacy=1000 ;; 1042) legacy=1001 ;; 1045) legacy=1002 ;; 1043) legacy=1003 ;; 1049) legacy=1009 ;; 1044) legacy=1005 ;; *) legacy=none ;; esac
    local d vendor device
    # Builtins only: a process spawn costs ~50 ms under TCG, and this runs often.
    for d in /sys/bus/pci/devices/*; do
        read -r vendor < "$d/vendor"
        [ "$vendor" = 0x1af4 ] || continue
        read -r device < "$d/device"
        case "$device" in "0x$id"|"0x$legacy") echo "${d##*/}" ;; esac
    done
}

# The PCI function of the 9p device with mount tag $1 (read while the
# kernel's virtio_9p has it; 9p devices come in tag order on the bus:
# virtiod9p, then its twin kernel9p).
share_function() {
    local d tag
    for d in /sys/bus/virtio/devices/virtio*; do
        [ -r "$d/mount_tag" ] || continue
        read -r tag < "$d/mount_tag" || true
        [ "${tag%$'\0'}" = "$1" ] && { basename "$(readlink -f "$d/..")"; return 0; }
    done
    # Claimed already: the order on the bus.
    case $1 in virtiod9p) virtio_functions 1049 | head -n1 ;; kernel9p) virtio_functions 1049 | sed -n 2p ;; esac
}

# Claim the share with tag virtiod9p alone and wait for it: sets $nine (its
# PCI function) and $share (where virtiod mounts it).
start_share() {
    nine=$(share_function virtiod9p)
    [ -n "$nine" ] || fail "no 9p device with tag virtiod9p"
    start_virtiod "[Device]
Address=$nine
Claim=yes"
    wait_state "$nine" running 90
    share=/run/virtiod-9p/virtiod9p
}

# Network interface with a given MAC (in the current namespace).
iface_with_mac() {
    ip -o link | awk -v mac="$1" '$0 ~ mac { sub(":", "", $2); print $2 }' | head -n1
}

# Wait up to $2 seconds for a command to succeed.
wait_for() {
    local cmd=$1 limit=${2:-10} i=0
    until eval "$cmd" >/dev/null 2>&1; do
        i=$((i + 1)); [ $i -le $((limit * 10)) ] || return 1
        sleep 0.1
    done
}

# Ask the host to run a QMP command now; prints its JSON result, fails on error.
#   host_step set_link '{"name": "nic1", "up": false}'
host_step() {
    local id="s$$-$RANDOM" line
    stty -F /dev/ttyS1 raw -echo 115200
    exec 3<>/dev/ttyS1
    printf '%s %s %s\n' "$id" "$1" "${2:-}" >&3
    while IFS= read -r -t 30 line <&3; do
        line=${line%$'\r'}
        case "$line" in
            "$id ok "*) exec 3>&-; echo "${line#"$id ok "}"; return 0 ;;
            "$id error "*) exec 3>&-; echo "host step $1 failed: ${line#"$id error "}"; return 1 ;;
        esac
    done
    exec 3>&-
    echo "host step $1: no answer from the host within 30 s"
    return 1
}

# Kernel driver bound to a PCI function ("none" if unbound).
driver_of() {
    local l
    l=$(readlink "/sys/bus/pci/devices/$1/driver" 2>/dev/null) || { echo none; return; }
    echo "${l##*/}"
}

# virtiod's state for one function (from `virtioctl status ADDR --json`).
vstate() { virtioctl status "$1" --json 2>/dev/null | jq -r .state; }

# Wait until virtiod reports $2 for function $1 (up to $3 seconds).
wait_state() {
    virtioctl wait "$1" --state "$2" --timeout "${3:-60}" 2> /tmp/wait-state.err \
        || fail "$1 did not reach state $2 within ${3:-60} s: $(cat /tmp/wait-state.err)"
}

# Start virtiod with only the given drop-in config (none: the default config).
start_virtiod() {
    rm -f /etc/virtiod/virtiod.conf.d/*.conf
    if [ -n "${1:-}" ]; then printf '%s\n' "$1" > /etc/virtiod/virtiod.conf.d/50-test.conf; fi
    # A VM without an IOMMU: every case runs with the machine-wide opt-in.
    if has_variant noiommu; then printf '[Service]\nUnsafeNoIOMMU=yes\n' > /etc/virtiod/virtiod.conf.d/10-noiommu.conf; fi
    systemctl start virtiod || { journalctl -u virtiod --no-pager | tail -n 20; fail "systemctl start virtiod failed"; }
}

# `systemctl reload virtiod`, returning once virtiod has applied it. On
# Debian 12's systemd (252) the reload job ends when ExecReload's SIGHUP is
# sent; virtiod then says RELOADING=1 … READY=1, and the unit shows
# "reloading" in between. Fails if it is not active again within $1 s (5).
reload_virtiod() {
    timeout 10 systemctl reload virtiod || fail "systemctl reload failed or hung"
    wait_for "[ \"\$(systemctl is-active virtiod)\" = active ]" "${1:-5}" \
        || fail "virtiod is $(systemctl is-active virtiod) after a reload"
}

stop_virtiod() {
    systemctl stop virtiod || true
    rm -f /etc/virtiod/virtiod.conf.d/*.conf
}

# Move the kernel-driven twin NIC into netns "twin" with 10.77.0.2/24 and
# fd77::2/64, and give interface $1 10.77.0.1/24 and fd77::1/64; both up.
twin_and_local() {
    local twin
    twin=$(iface_with_mac 52:54:00:12:34:02)
    [ -n "$twin" ] || fail "no twin NIC"
    ip netns add twin
    ip link set "$twin" netns twin
    ip -n twin link set lo up
    ip -n twin addr add 10.77.0.2/24 dev "$twin"
    ip -n twin addr add fd77::2/64 dev "$twin" nodad
    ip -n twin link set "$twin" up
    ip addr add 10.77.0.1/24 dev "$1"
    ip addr add fd77::1/64 dev "$1" nodad
    ip link set "$1" up
    wait_for "ip -n twin -o link show $twin | grep -q 'state UP'" 10 || fail "twin did not come up"
}

# Start virtiod claiming the NIC 52:54:00:12:34:01 as vtnet0; sets $net to
# its PCI address once its plugin runs.
start_virtiod_with_nic() {
    start_virtiod "[Device]
MACAddress=52:54:00:12:34:01
Claim=yes
InterfaceName=vtnet0"
    net=$(claimed_nic)
    [ -n "$net" ] || fail "the NIC was not claimed: $(virtioctl list --json | jq -c '.[] | select(.type == "net") | {address, state, reason}')"
    wait_state "$net" running 60
}

# Packets received on each receive queue of NIC $1, as a JSON array.
received_per_queue() {
    virtioctl status "$1" --json | jq -c '[.driver.queues[] | select(.name | startswith("receiveq")) | .counters.packets]'
}

# Packets received on all receive queues of NIC $1.
received_packets() { received_per_queue "$1" | jq add; }

# The usual start of a NIC case: virtiod with the NIC as vtnet0, the twin in
# its netns, a first ping; the twin and virtiod go away when the case exits.
start_nic_with_twin() {
    trap 'ip netns del twin 2>/dev/null || true; stop_virtiod' EXIT
    start_virtiod_with_nic
    twin_and_local vtnet0
    ping -c 2 -i 0.2 -W 3 10.77.0.2 >/dev/null || fail "no ping through vtnet0 at start"
}

# The address of the NIC virtiod holds (type net, bound to $LENT_DRIVER).
claimed_nic() {
    virtioctl list --json | jq -r --arg d "$LENT_DRIVER" '.[] | select(.type == "net" and .kernel_driver == $d) | .address'
}

# The PCI address of the kernel-driven NIC with MAC $1 (empty if none).
nic_function() {
    local nic f
    nic=$(iface_with_mac "$1")
    [ -n "$nic" ] || return 0
    for f in $(virtio_functions 1041); do [ -e "/sys/bus/pci/devices/$f/virtio"*/net/"$nic" ] && echo "$f"; done
    return 0
}

# Start a one-shot iperf3 server in netns "twin" on port $1 and wait until it listens.
twin_iperf_server() {
    ip netns exec twin iperf3 -s -D -1 -p "$1" >/dev/null
    wait_for "ip netns exec twin ss -Hltn 'sport = :$1' | grep -q ." 10 || fail "iperf3 server on port $1 did not start"
}

# Longest gap in ms between consecutive replies in `ping -D` output file $1.
longest_reply_gap() {
    awk -F'[][]' '/bytes from/ { t = $2 + 0; if (last) { g = (t - last) * 1000; if (g > max) max = g }; last = t }
                  END { printf "%d\n", max }' "$1"
}

# Ping statistics of file $1 as "transmitted received".
ping_counts() {
    awk '/packets transmitted/ { print $1, $4 }' "$1"
}

# TCP reset counters in namespace $1 ("" = this one) since `tcp_counters_reset $1`
# (each namespace keeps its own nstat history: the counters differ per namespace).
tcp_nstat() {
    local ns=()
    [ -n "$1" ] && ns=(ip netns exec "$1")
    shift
    NSTAT_HISTORY=/tmp/nstat.${ns[3]:-main} "${ns[@]}" nstat "$@"
}
tcp_counters_reset() { tcp_nstat "$1" -n; }
tcp_reset_counters() { tcp_nstat "$1" -saz TcpEstabResets TcpExtTCPAbortOnData TcpExtTCPAbortOnClose TcpOutRsts | awk '$1 !~ /^#/ && $2 > 0 { printf "%s=%s ", $1, $2 }'; }

# While a TCP stream runs from this side to the twin (iperf3, 100 Mbit/s,
# $3 seconds, default 12) and the twin pings 10.77.0.1 at 100 pps for all
# but the last 2 of them, run command $1 after 3 s; then check 0 TCP resets
# and 0 lost pings and print the longest gap between replies. $2 names the
# event. Give events that take seconds (a restart) the default window.
# With $4 = "until-done", $3 is only the longest window: the traffic ends 4 s
# after the event did (ping and iperf3 interrupted; a ping still in flight
# then is not counted: only pings older than the last 0.5 s of replies are).
under_traffic() {
    local what=$2 seconds=${3:-12} early=${4:-}
    [ "$seconds" -ge 6 ] || fail "under_traffic: a window of $seconds s leaves no time after the event at 3 s"
    local pings=$(( (seconds - 2) * 100 ))
    twin_iperf_server 5301
    tcp_counters_reset ""; tcp_counters_reset twin
    # Every RST on the wire, with its time, to tell a reset from teardown noise.
    tcpdump -n -l -tt -i vtnet0 'tcp[tcpflags] & tcp-rst != 0' > /tmp/traffic-rst 2>/dev/null &
    local dump=$!
    sleep 0.5
    echo "start $(date +%s.%N)" > /tmp/traffic-times
    iperf3 -c 10.77.0.2 -p 5301 -t "$seconds" -b 100M -J > /tmp/traffic-iperf.json 2>&1 &
    local iperf=$!
    ip netns exec twin ping -D -n -i 0.01 -c "$pings" -W 5 10.77.0.1 > /tmp/traffic-ping 2>&1 &
    local pinger=$!
    sleep 3
    echo "event $(date +%s.%N)" >> /tmp/traffic-times
    eval "$1" || { kill $iperf $pinger $dump 2>/dev/null; fail "$what failed"; }
    echo "event-done $(date +%s.%N)" >> /tmp/traffic-times
    local ended=""
    if [ "$early" = until-done ]; then
        sleep 4
        ended=$(date +%s.%N)
        kill -INT $pinger $iperf 2>/dev/null || true
    fi
    wait $pinger || true
    wait $iperf || true
    echo "iperf-end $(date +%s.%N)" >> /tmp/traffic-times
    sleep 1
    kill $dump 2>/dev/null || true
    read -r sent got < <(ping_counts /tmp/traffic-ping)
    if [ -n "$ended" ]; then
        # Sequence numbers: every ping up to 50 before the last answered one must have its reply.
        read -r sent got < <(awk -F'icmp_seq=' '/bytes from/ { split($2, a, " "); seen[a[1] + 0] = 1; if (a[1] + 0 > last) last = a[1] + 0 }
            END { n = last - 50; g = 0; for (i = 1; i <= n; i++) if (i in seen) g++; print n, g }' /tmp/traffic-ping)
        # ...and they went on past the event: a reply after it ended (ping
        # -i 0.01 under TCG manages 69–100 a second, so no rate is checked
        # beyond 3 s worth: 300 pings, given as 90 % of `pings` below).
        local done_at last_reply
        done_at=$(awk '$1 == "event-done" { print $2 }' /tmp/traffic-times)
        last_reply=$(awk -F'[][]' '/bytes from/ { t = $2 } END { print (t == "" ? 0 : t) }' /tmp/traffic-ping)
        awk -v l="$last_reply" -v d="$done_at" 'BEGIN { exit !(l > d) }' \
            || fail "$what: no ping answered after the event ended (last reply $last_reply, event done $done_at)"
        pings=334
    fi
    local gap resets
    gap=$(longest_reply_gap /tmp/traffic-ping)
    # Resets of the stream under test: RST segments of its connections (port
    # 5301) on the wire while it streams. The last 2 s of the run are
    # left out: an iperf3 server closes its sockets at the end with data still
    # arriving and answers that with an RST, reload or not. The namespace-wide
    # counters are shown as well (they may count leftovers of earlier cases).
    local t0 cutoff
    t0=$(awk '$1 == "start" { print $2 }' /tmp/traffic-times)
    cutoff=$(awk -v t="$t0" -v s="$seconds" 'BEGIN { printf "%.6f", t + s - 2 }')
    # Interrupted: the stream's own teardown starts at the interrupt.
    [ -z "$ended" ] || cutoff=$(awk -v e="$ended" 'BEGIN { printf "%.6f", e - 0.5 }')
    grep '\.5301[ :]' /tmp/traffic-rst | awk -v c="$cutoff" '$1 < c' > /tmp/traffic-rst-during || true
    resets=$(wc -l < /tmp/traffic-rst-during)
    local teardown=$(( $(grep -c '\.5301[ :]' /tmp/traffic-rst || true) - resets ))
    local counters
    counters="here: $(tcp_reset_counters "")twin: $(tcp_reset_counters twin)"
    echo "$what under traffic: $got/$sent pings answered, longest gap between replies $gap ms, TCP resets $resets," \
         "stream $(jq 'if .error then [.intervals[].sum.bits_per_second] | add / length else .end.sum_received.bits_per_second end | . / 1e6 | floor' /tmp/traffic-iperf.json 2>/dev/null) Mbit/s" \
         "(RSTs at iperf3's teardown: $teardown; reset counters $counters)"
    # The pings must outlast the event, or its pause was not measured.
    awk -v t="$t0" -v s="$seconds" '$1 == "event-done" { exit !($2 < t + s - 2) }' /tmp/traffic-times \
        || fail "$what outlasted the ${seconds} s traffic window (times: $(tr '\n' ' ' < /tmp/traffic-times))"
    [ "${sent:-0}" -ge $(( pings * 9 / 10 )) ] || fail "$what: ping sent only ${sent:-0} packets: $(tail -n 3 /tmp/traffic-ping)"
    [ "$got" = "$sent" ] || fail "$what: $((sent - got)) of $sent pings lost (longest gap $gap ms)"
    [ "$resets" = 0 ] || fail "$what: $resets TCP resets of the stream: $(head -n 3 /tmp/traffic-rst-during | tr '\n' ';') (times: $(tr '\n' ' ' < /tmp/traffic-times))"
    if [ -n "$ended" ]; then
        # Interrupted on purpose: iperf3 says so, and its intervals count what went through.
        jq -e '(.error == null or (.error | test("interrupt"))) and ([.intervals[].sum.bytes] | add) > 1000000' /tmp/traffic-iperf.json >/dev/null \
            || fail "$what: the TCP stream broke: $(jq -r '.error // "too few bytes"' /tmp/traffic-iperf.json 2>/dev/null || tail -n 2 /tmp/traffic-iperf.json)"
    else
        jq -e '.error == null and .end.sum_received.bytes > 1000000' /tmp/traffic-iperf.json >/dev/null \
            || fail "$what: the TCP stream broke: $(jq -r '.error // "too few bytes"' /tmp/traffic-iperf.json 2>/dev/null || tail -n 2 /tmp/traffic-iperf.json)"
    fi
}

# Device-side used index of queue $2 of the QEMU device with id $1, read
# over QMP (x-query-virtio-queue-status): it only goes back to 0 when the
# device is reset, so it shows whether a restart reset the device.
device_used_idx() {
    host_step x-query-virtio-queue-status "{\"path\": \"/machine/peripheral/$1/virtio-backend\", \"queue\": $2}" \
        | jq '."used-idx"'
}

# --- disks (block cases) ---------------------------------------------------

# How the block plugin exports disks in this boot: ublk where the kernel has
# ublk_drv (the backports kernel), nbd on Debian 12's stock one.
DISK_ENDPOINT=nbd
[ "$(cat /payload/kernel-flavour 2>/dev/null)" = backports ] && DISK_ENDPOINT=ublk

# hot_add_disk ID NODE BUS SERIAL [EXTRA-JSON-PROPERTIES]: device_add a modern
# virtio-blk on root port BUS backed by QEMU block node NODE (packed rings in
# the packed variant); prints its PCI address once virtiod lists it (virtiod
# must run).
hot_add_disk() {
    local id=$1 node=$2 bus=$3 serial=$4 extra=${5:-} before after
    has_variant packed && extra="$extra, \"packed\": \"on\""
    before=$(virtioctl list --json | jq -r '.[].address' | sort)
    host_step device_add "{\"driver\": \"virtio-blk-pci\", \"id\": \"$id\", \"drive\": \"$node\", \"bus\": \"$bus\", \"serial\": \"$serial\", \"disable-legacy\": \"on\", \"iommu_platform\": \"on\"$extra}" >/dev/null \
        || fail "device_add $id failed"
    wait_for "[ \$(virtioctl list --json | jq length) -gt $(echo "$before" | wc -l) ]" 60 || fail "hot-added disk $id not listed"
    after=$(virtioctl list --json | jq -r '.[].address' | sort)
    comm -13 <(echo "$before") <(echo "$after") | head -n1
}

# remove_disk ID ADDRESS: release it if virtiod holds it, then device_del.
remove_disk() {
    virtioctl release "$2" >/dev/null 2>&1 || true
    host_step device_del "{\"id\": \"$1\"}" >/dev/null || true
    wait_for "[ ! -e /sys/bus/pci/devices/$2 ]" 60 || true
}

# claim_disk ADDRESS SERIAL: claim a disk, wait for its plugin and for
# /dev/disk/by-id/virtiod-SERIAL; prints the /dev node it is (nbdN or ublkbN).
claim_disk() {
    virtioctl claim "$1" >/dev/null || fail "claim $1 failed: $(virtioctl status "$1" --json | jq -r .reason)"
    wait_state "$1" running 60
    wait_for "[ -b /dev/disk/by-id/virtiod-$2 ]" 30 \
        || fail "no /dev/disk/by-id/virtiod-$2: endpoints $(virtioctl status "$1" --json | jq -c .endpoints)"
    local dev
    dev=$(virtioctl status "$1" --json | jq -r ".endpoints[] | select(.kind == \"$DISK_ENDPOINT\") | .details.device")
    [ "$(readlink -f "/dev/disk/by-id/virtiod-$2")" = "$dev" ] || fail "by-id link points to $(readlink -f "/dev/disk/by-id/virtiod-$2"), status says $dev"
    echo "$dev"
}

# A block counter summed over the disk's queues: disk_counter ADDRESS NAME.
disk_counter() {
    virtioctl status "$1" --json | jq "[.driver.queues[].counters.$2] | add"
}

# Kernel I/O errors logged after kernel log line $1 (dmesg_lines before).
dmesg_lines() { dmesg | wc -l; }
io_errors() { dmesg | tail -n +$(($1 + 1)) | grep -E "I/O error|blk_update_request|Buffer I/O error|EXT4-fs error|critical medium" || true; }

# Console ports (console/*.sh): where virtiod names them, and one port's
# fields from `virtioctl status DEVICE --json` (.driver.config["port.N.FIELD"]).
PORTS_DIR=/run/virtiod/ports
# Start virtiod claiming the first device of type $1 (modern device ID $2),
# more lines of its [Device] section in $3; its address is left in CLAIMED
# once its plugin runs.
start_claiming() {
    start_virtiod "[Device]
Type=$1
Claim=yes${3:+
$3}"
    CLAIMED=$(virtio_functions "$2" | head -n1)
    [ -n "$CLAIMED" ] || fail "no $1 device"
    wait_state "$CLAIMED" running 60
}
start_console() {
    start_claiming console 1043
    con=$CLAIMED
    wait_for "[ -L $PORTS_DIR/org.virtiod.console0 ] && [ -L $PORTS_DIR/org.virtiod.port1 ]" 30 \
        || fail "the ports are not under $PORTS_DIR: $(ls -l $PORTS_DIR 2>&1); $(virtioctl status "$con" 2>&1 | tail -n 20)"
}
port_field() { virtioctl status "$con" --json | jq -r --arg k "port.$1.$2" '.driver.config[$k] // "none"'; }
# The id of the port named $1 (from status).
port_id() {
    virtioctl status "$con" --json | jq -r --arg n "$1" \
        '.driver.config | to_entries[] | select(.key | test("^port\\.[0-9]+\\.name$")) | select(.value == $n) | .key | split(".")[1]'
}

# The balloon (claimed as $bal) and the host's view of it. QMP `balloon`
# sets the guest's target size in bytes; query-balloon's `actual` is the
# size the guest has left (RAM − what the balloon holds).
start_balloon() {
    # No target left over from an earlier case.
    host_step balloon "{\"value\": $((1024 << 20))}" >/dev/null || fail "QMP balloon to 1 GiB failed"
    start_claiming balloon 1045 "${1:-}"
    bal=$CLAIMED
}
GUEST_RAM=$((1024 << 20))
balloon_size() { host_step query-balloon | jq .actual; }
balloon_to() { host_step balloon "{\"value\": $1}" >/dev/null || fail "QMP balloon $1 failed"; }
# Wait until the host sees the guest at $1 bytes (up to $2 s); the
# milliseconds it took are left in BALLOON_MS (not printed: a failure inside
# $(…) would lose its message).
wait_balloon() {
    local want=$1 limit=$2 t0=$(date +%s%N)
    until [ "$(balloon_size)" -eq "$want" ]; do
        [ $(( ($(date +%s%N) - t0) / 1000000000 )) -lt "$limit" ] \
            || fail "the host sees $(( $(balloon_size) >> 20 )) MiB, not $(( want >> 20 )) MiB, after $limit s: $(virtioctl status "$bal" --json | jq -c '.driver.config, .endpoints')"
        sleep 0.2
    done
    BALLOON_MS=$(( ($(date +%s%N) - t0) / 1000000 ))
}
mem_available_mib() { awk '$1 == "MemAvailable:" { print int($2 / 1024) }' /proc/meminfo; }
# What the supervisor holds for the balloon (MiB), from its endpoint.
balloon_held_mib() { virtioctl status "$bal" --json | jq -r '.endpoints[] | select(.kind == "balloon") | .details.held' | awk '{ print $1 }'; }
oom_kills() { awk '$1 == "oom_kill" { print $2 }' /proc/vmstat; }
