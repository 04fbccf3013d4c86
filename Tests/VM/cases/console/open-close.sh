# Open and close both ways: a process here opening and closing a port's
# terminal reaches the host as QMP VSERPORT_CHANGE events (open true, then
# false); the host side connecting and disconnecting shows in status — also
# after a reload, which keeps the open state.
source /payload/cases/lib.sh
start_console
trap stop_virtiod EXIT
p1=$(port_id org.virtiod.port1)
events() { host_step x-events '{"event": "VSERPORT_CHANGE"}' | jq -c '[.[] | select(.data.id == "port1dev") | .data.open]'; }
before=$(events | jq length)
exec 5<>"$PORTS_DIR/org.virtiod.port1"
wait_for "[ \"\$(events | jq -c '.[$before:]')\" = '[true]' ]" 20 || fail "no VSERPORT_CHANGE open=true for port1 (events since: $(events | jq -c ".[$before:]"))"
# A reload keeps it open: the host sees no change.
virtioctl reload console > /tmp/reload.out 2>&1 || fail "reload console: $(cat /tmp/reload.out)"
sleep 2
[ "$(events | jq -c ".[$before:]")" = '[true]' ] || fail "the reload changed what the host sees: $(events | jq -c ".[$before:]")"
[ "$(port_field "$p1" terminal)" = open ] || fail "after the reload the terminal is $(port_field "$p1" terminal)"
exec 5>&-
wait_for "[ \"\$(events | jq -c '.[$before:]')\" = '[true,false]' ]" 20 || fail "no VSERPORT_CHANGE open=false for port1 (events since: $(events | jq -c ".[$before:]"))"
host_step x-port-connect '{"port": "port1"}' >/dev/null || fail "cannot connect to port1's chardev"
wait_for "[ \"\$(port_field $p1 host)\" = connected ]" 15 || fail "host side connect not in status"
host_step x-port-close '{"port": "port1"}' >/dev/null
wait_for "[ \"\$(port_field $p1 host)\" = disconnected ]" 15 || fail "host side disconnect not in status"
echo "port1: open/close seen by the host as VSERPORT_CHANGE true, false (a reload in between changed nothing); host connect/disconnect in status"
