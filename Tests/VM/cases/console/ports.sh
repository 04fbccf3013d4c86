# Console ports as terminals: the console port and a named port appear under
# /run/virtiod/ports (by name and by address), the console cooked and the
# port raw; a port hot-added on the host while virtiod runs (QMP chardev-add
# + device_add virtserialport) appears with its name, and disappears —
# link and terminal — when device_del removes it; status shows each port's
# open state on both sides.
source /payload/cases/lib.sh
start_console
trap stop_virtiod EXIT
for n in org.virtiod.console0 org.virtiod.port1; do
    t=$(readlink "$PORTS_DIR/$n")
    [[ $t == /dev/pts/* ]] && [ -c "$t" ] || fail "$n -> $t is not a terminal"
done
[ "$(readlink "$PORTS_DIR/$con-port0")" = "$(readlink "$PORTS_DIR/org.virtiod.console0")" ] \
    || fail "no address link for port 0: $(ls -l $PORTS_DIR)"
p1=$(port_id org.virtiod.port1)
[ -n "$p1" ] || fail "status names no port org.virtiod.port1: $(virtioctl status "$con" --json | jq -c .driver.config)"
[ "$(port_field 0 console)" = yes ] && [ "$(port_field "$p1" console)" = no ] || fail "console flags: port 0 $(port_field 0 console), port $p1 $(port_field "$p1" console)"
stty -F "$PORTS_DIR/org.virtiod.port1" -a | grep -q -- '-icanon' || fail "port1 is not raw: $(stty -F "$PORTS_DIR/org.virtiod.port1" -a)"
stty -F "$PORTS_DIR/org.virtiod.console0" -a | grep -qw 'icanon' || fail "the console port is not cooked"
virtioctl status "$con" | grep -q "org.virtiod.port1" || fail "virtioctl status does not name the port: $(virtioctl status "$con")"

# Open states: the host side connecting, a process here opening the terminal.
[ "$(port_field "$p1" host)" = disconnected ] || fail "port1 host side: $(port_field "$p1" host) before anything connected"
host_step x-port-connect '{"port": "port1"}' >/dev/null || fail "cannot connect to port1's chardev"
wait_for "[ \"\$(port_field $p1 host)\" = connected ]" 15 || fail "status does not show the host side connected: $(port_field "$p1" host)"
[ "$(port_field "$p1" terminal)" = closed ] || fail "port1 terminal: $(port_field "$p1" terminal) with nobody on it"
exec 5<>"$PORTS_DIR/org.virtiod.port1"
wait_for "[ \"\$(port_field $p1 terminal)\" = open ]" 15 || fail "status does not show the terminal open: $(port_field "$p1" terminal)"
exec 5>&-
wait_for "[ \"\$(port_field $p1 terminal)\" = closed ]" 15 || fail "status does not show the terminal closed again"
host_step x-port-close '{"port": "port1"}' >/dev/null
wait_for "[ \"\$(port_field $p1 host)\" = disconnected ]" 15 || fail "status does not show the host side gone"

# A port added while virtiod runs, then removed.
host_step x-port-chardev '{"port": "port2"}' >/dev/null || fail "chardev-add port2 failed"
host_step device_add '{"driver": "virtserialport", "bus": "vser0.0", "chardev": "port2", "name": "org.virtiod.port2", "id": "port2dev"}' >/dev/null \
    || fail "device_add virtserialport failed"
wait_for "[ -L $PORTS_DIR/org.virtiod.port2 ]" 30 || fail "the hot-added port did not appear: $(ls -l $PORTS_DIR)"
p2=$(port_id org.virtiod.port2)
t2=$(readlink "$PORTS_DIR/org.virtiod.port2")
[ -n "$p2" ] && [ -c "$t2" ] || fail "hot-added port: id '$p2', terminal '$t2'"
host_step device_del '{"id": "port2dev"}' >/dev/null || fail "device_del port2dev failed"
wait_for "[ ! -e $PORTS_DIR/org.virtiod.port2 ] && [ ! -e $PORTS_DIR/$con-port$p2 ]" 30 || fail "the removed port's links stay: $(ls -l $PORTS_DIR)"
wait_for "[ ! -e $t2 ]" 15 || fail "the removed port's terminal $t2 stays"
[ "$(port_field "$p2" name)" = none ] || fail "status still lists the removed port"
wait_state "$con" running 5
[ -L "$PORTS_DIR/org.virtiod.port1" ] || fail "port1 went with port2"
echo "ports: console0 and port1 (id $p1) as $(readlink $PORTS_DIR/org.virtiod.console0) and $(readlink $PORTS_DIR/org.virtiod.port1); port2 (id $p2) came as $t2 and went"
