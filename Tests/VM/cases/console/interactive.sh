# A shell on the console port answers the host: bash -i on the terminal
# (its controlling tty), a command sent from the host side of the console
# chardev, its output read back there; `stty size` shows the device's size
# (config cols/rows with VIRTIO_CONSOLE_F_SIZE; 0 0 when the device gives
# none, as QEMU's does not).
source /payload/cases/lib.sh
start_console
trap 'kill $shell_pid 2>/dev/null; stop_virtiod' EXIT
c="$PORTS_DIR/org.virtiod.console0"
host_step x-port-connect '{"port": "console"}' >/dev/null || fail "cannot connect to the console chardev"
setsid -c bash --norc -i <>"$c" >&0 2>&1 &
shell_pid=$!
disown "$shell_pid"
wait_for "[ \"\$(port_field 0 terminal)\" = open ]" 15 || fail "the shell did not open the console terminal"
out=$(host_step x-port-expect '{"port": "console", "write": "echo virtiod-$((6 * 7))\n", "until": "virtiod-42", "timeout": 60}') \
    || fail "no answer from the shell: $out"
rows=$(virtioctl status "$con" --json | jq -r '.driver.config.rows // 0')
cols=$(virtioctl status "$con" --json | jq -r '.driver.config.cols // 0')
out=$(host_step x-port-expect '{"port": "console", "write": "echo size=$(stty size)=\n", "until": "size=[0-9]+ [0-9]+=", "timeout": 60}') \
    || fail "no stty size from the shell: $out"
size=$(echo "$out" | jq -r .text | grep -o 'size=[0-9]* [0-9]*=' | tail -n1)
[ "$size" = "size=$rows $cols=" ] || fail "stty size says '$size', the device says $rows rows, $cols cols"
echo "shell on the console port answered the host; stty size $rows $cols as the device says"
