# The balloon's statistics queue: once the host sets a polling interval
# (QMP qom-set guest-stats-polling-interval), QEMU's guest-stats show the
# guest's free, total and available memory within 5 % of /proc/meminfo —
# and keep updating across `virtioctl reload balloon` (the stats buffer
# travels in the hand-over record).
source /payload/cases/lib.sh
trap stop_virtiod EXIT
start_balloon
host_step qom-set '{"path": "/machine/peripheral/balloon0", "property": "guest-stats-polling-interval", "value": 1}' >/dev/null \
    || fail "qom-set guest-stats-polling-interval failed"
stats() { host_step qom-get '{"path": "/machine/peripheral/balloon0", "property": "guest-stats"}'; }
wait_for '[ "$(stats | jq ".stats[\"stat-total-memory\"]")" -gt 0 ]' 20 || fail "no guest stats reached the host: $(stats)"
# Each against /proc/meminfo read right after (free memory moves a little).
s=$(stats)
within() { # within NAME HOST-BYTES GUEST-KIB
    local host=$2 guest=$(( $3 * 1024 ))
    [ "$host" -gt 0 ] && [ $(( (host > guest ? host - guest : guest - host) * 100 / guest )) -le 5 ] \
        || fail "$1: host sees $host, /proc/meminfo says $guest"
}
kib() { awk -v k="$1:" '$1 == k { print $2 }' /proc/meminfo; }
within total "$(echo "$s" | jq '.stats["stat-total-memory"]')" "$(kib MemTotal)"
within free "$(echo "$s" | jq '.stats["stat-free-memory"]')" "$(kib MemFree)"
within available "$(echo "$s" | jq '.stats["stat-available-memory"]')" "$(kib MemAvailable)"
echo "$s" | jq -e '.stats["stat-minor-faults"] > 0' >/dev/null || fail "no minor fault count: $(echo "$s" | jq -c .stats)"
updates=$(virtioctl status "$bal" --json | jq '[.driver.queues[] | select(.name == "statsq") | .counters.updates] | add')
[ "$updates" -ge 2 ] || fail "statsq counted $updates updates"
# A reload hands the buffer over; the host keeps getting fresh figures.
virtioctl reload balloon > /tmp/balloon-reload 2>&1 || fail "reload balloon: $(cat /tmp/balloon-reload)"
t1=$(stats | jq '."last-update"')
wait_for '[ "$(stats | jq ".\"last-update\"")" -gt '"$t1"' ]' 15 || fail "no stats update after the reload (last-update $t1)"
after=$(virtioctl status "$bal" --json | jq '[.driver.queues[] | select(.name == "statsq") | .counters.updates] | add')
[ "$after" -gt "$updates" ] || fail "statsq updates did not carry over and grow: $updates → $after"
host_step qom-set '{"path": "/machine/peripheral/balloon0", "property": "guest-stats-polling-interval", "value": 0}' >/dev/null || true
echo "guest stats: total $(echo "$s" | jq '.stats["stat-total-memory"]') B, free $(echo "$s" | jq '.stats["stat-free-memory"]') B, available $(echo "$s" | jq '.stats["stat-available-memory"]') B; updates $updates → $after across a reload"
