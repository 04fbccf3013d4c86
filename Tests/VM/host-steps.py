#!/usr/bin/env python3
"""Host side of in-guest "host steps" during a VM run.

The guest writes requests on its second serial port (ttyS1), one per line:
    ID COMMAND JSON-ARGUMENTS
This helper runs COMMAND on QEMU's QMP socket and answers on the same port:
    ID ok JSON-RESULT      or      ID error MESSAGE
It exits when QEMU closes the serial socket.

These "x-" commands are this helper's own (QEMU's x- commands pass through), for the host side of
virtio-serial ports (their chardevs are sockets RUN_DIR/NAME.sock, QEMU the
server) and for QMP events:
    x-port-connect {"port": P}            connect (the guest sees the host side open)
    x-port-close {"port": P}              disconnect
    x-port-send {"port": P, "bytes": N, "seed": S, "rate": R}
                                          send N pseudo-random bytes in the background (R bytes/s at most)
    x-port-recv {"port": P, "bytes": N}   receive N bytes in the background
    x-port-result {"port": P}             {"sent": {...}, "received": {...}}: bytes, sha256, done
    x-port-expect {"port": P, "write": T, "until": REGEX, "timeout": S}
                                          write T, read until REGEX matches; the text read
    x-port-chardev {"port": P}            chardev-add P: a socket RUN_DIR/P.sock (for device_add virtserialport)
    x-events {"event": E}                 the QMP events E seen so far (oldest first)
    x-share-manifest {"share": S, "dir": D}
                                          {"files": N, "sha256": H}: the sha256 of "HASH  ./PATH" lines (sha256sum's
                                          format, sorted by path) of the regular files under D in the host folder
                                          behind share S ("share" for virtiod9p, "share-kernel" for kernel9p)

    host-steps.py CONTROL_SOCKET QMP_SOCKET
"""
import hashlib
import json
import os
import random
import re
import socket
import sys
import threading
import time


def connect(path, attempts=100):
    for _ in range(attempts):
        try:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(path)
            return s
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"host-steps: cannot connect to {path}")


class QMP:
    def __init__(self, path):
        self.sock = connect(path)
        self.events = []
        self.file = self.sock.makefile("rwb", buffering=0)
        self.read()  # greeting
        self.execute("qmp_capabilities", {})

    def read(self):
        while True:
            line = self.file.readline()
            if not line:
                raise SystemExit("host-steps: QMP closed")
            msg = json.loads(line)
            if "event" not in msg:
                return msg
            self.events.append(msg)

    def execute(self, command, arguments):
        self.file.write(json.dumps({"execute": command, "arguments": arguments}).encode() + b"\n")
        return self.read()


class Port:
    """The host side of one virtio-serial port: a client of its chardev socket."""

    def __init__(self, path):
        self.sock = connect(path, attempts=50)
        self.sent = {"bytes": 0, "sha256": None, "done": False}
        self.received = {"bytes": 0, "sha256": None, "done": False}

    def send(self, count, seed, rate=0):
        data = random.Random(seed).randbytes(count)
        self.sent = {"bytes": 0, "sha256": hashlib.sha256(data).hexdigest(), "done": False}

        def run():
            view = memoryview(data)
            start = time.monotonic()
            while view:
                n = self.sock.send(view[:65536])
                view = view[n:]
                self.sent["bytes"] += n
                if rate:  # at most `rate` bytes a second
                    ahead = self.sent["bytes"] / rate - (time.monotonic() - start)
                    if ahead > 0:
                        time.sleep(ahead)
            self.sent["done"] = True
        threading.Thread(target=run, daemon=True).start()

    def recv(self, count):
        self.received = {"bytes": 0, "sha256": None, "done": False}

        def run():
            h = hashlib.sha256()
            while self.received["bytes"] < count:
                chunk = self.sock.recv(min(65536, count - self.received["bytes"]))
                if not chunk:
                    break
                h.update(chunk)
                self.received["bytes"] += len(chunk)
            self.received["sha256"] = h.hexdigest()
            self.received["done"] = True
        threading.Thread(target=run, daemon=True).start()

    def expect(self, text, pattern, timeout):
        if text:
            self.sock.sendall(text.encode())
        seen = b""
        deadline = time.monotonic() + timeout
        self.sock.settimeout(0.5)
        try:
            while not re.search(pattern.encode(), seen):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"no {pattern!r} within {timeout} s; read {seen[-400:]!r}")
                try:
                    chunk = self.sock.recv(4096)
                except socket.timeout:
                    continue
                if not chunk:
                    raise RuntimeError(f"port closed; read {seen[-400:]!r}")
                seen += chunk
        finally:
            self.sock.settimeout(None)
        return seen.decode(errors="replace")


# QEMU has x- commands of its own (x-query-virtio-queue-status): only these are ours.
OWN_COMMANDS = {"x-events", "x-share-manifest", "x-port-chardev", "x-port-connect", "x-port-close", "x-port-send", "x-port-recv",
                "x-port-result", "x-port-expect"}


def own_command(command, arguments, qmp, ports, run_dir):
    """This helper's x- commands (see the module's doc)."""
    if command == "x-events":
        qmp.execute("query-status", {})  # reads what QEMU has sent meanwhile
        return [e for e in qmp.events if e.get("event") == arguments.get("event")]
    if command == "x-share-manifest":
        share = arguments["share"]
        if share not in ("share", "share-kernel"):
            raise RuntimeError(f"no share {share}")
        root = os.path.realpath(os.path.join(run_dir, share, arguments.get("dir", ".")))
        if not root.startswith(os.path.realpath(os.path.join(run_dir, share))):
            raise RuntimeError("dir leaves the share")
        lines = []
        for top, dirs, files in os.walk(root):
            for f in files:
                path = os.path.join(top, f)
                if os.path.islink(path) or not os.path.isfile(path):
                    continue
                with open(path, "rb") as fh:
                    digest = hashlib.sha256(fh.read()).hexdigest()
                lines.append((os.path.relpath(path, root), digest))
        lines.sort(key=lambda x: x[0].encode())
        text = "".join(f"{d}  ./{p}\n" for p, d in lines)
        return {"files": len(lines), "sha256": hashlib.sha256(text.encode()).hexdigest()}
    name = arguments["port"]
    if command == "x-port-chardev":
        path = os.path.join(run_dir, f"{name}.sock")
        reply = qmp.execute("chardev-add", {"id": name, "backend": {"type": "socket", "data": {
            "addr": {"type": "unix", "data": {"path": path}}, "server": True, "wait": False}}})
        if "error" in reply:
            raise RuntimeError(reply["error"].get("desc", reply["error"]))
        return {}
    if command == "x-port-connect":
        if name in ports:
            ports[name].sock.close()
        ports[name] = Port(os.path.join(run_dir, f"{name}.sock"))
        return {}
    port = ports.get(name)
    if port is None:
        raise RuntimeError(f"port {name} is not connected")
    if command == "x-port-close":
        port.sock.close()
        del ports[name]
        return {}
    if command == "x-port-send":
        port.send(int(arguments["bytes"]), arguments.get("seed", 1), int(arguments.get("rate", 0)))
        return {}
    if command == "x-port-recv":
        port.recv(int(arguments["bytes"]))
        return {}
    if command == "x-port-result":
        return {"sent": port.sent, "received": port.received}
    if command == "x-port-expect":
        return {"text": port.expect(arguments.get("write", ""), arguments["until"], float(arguments.get("timeout", 30)))}
    raise RuntimeError(f"unknown command {command}")


def main():
    control_path, qmp_path = sys.argv[1], sys.argv[2]
    control = connect(control_path)
    qmp = QMP(qmp_path)
    run_dir = os.path.dirname(os.path.abspath(qmp_path))
    ports = {}
    buffer = b""
    while True:
        data = control.recv(4096)
        if not data:
            return
        buffer += data
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            parts = line.decode(errors="replace").strip().split(" ", 2)
            if len(parts) < 2:
                continue
            ident, command = parts[0], parts[1]
            try:
                arguments = json.loads(parts[2]) if len(parts) == 3 and parts[2] else {}
                if command in OWN_COMMANDS:
                    reply = {"return": own_command(command, arguments, qmp, ports, run_dir)}
                else:
                    reply = qmp.execute(command, arguments)
                if "error" in reply:
                    answer = f"{ident} error {reply['error'].get('desc', reply['error'])}"
                else:
                    answer = f"{ident} ok {json.dumps(reply.get('return', {}))}"
            except Exception as e:  # a bad request gets an answer, never silence
                answer = f"{ident} error {e}"
            print(f"[vm] host step: {command} {parts[2] if len(parts) == 3 else ''} -> {answer.split(' ', 2)[1]}",
                  file=sys.stderr)
            control.sendall(answer.encode() + b"\n")


if __name__ == "__main__":
    main()
