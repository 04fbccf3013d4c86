#!/usr/bin/env python3
"""Host side of in-guest "host steps" during a VM run.

The guest writes requests on its second serial port (ttyS1), one per line:
    ID COMMAND JSON-ARGUMENTS
This helper runs COMMAND on QEMU's QMP socket and answers on the same port:
    ID ok JSON-RESULT      or      ID error MESSAGE
It exits when QEMU closes the serial socket.

    host-steps.py CONTROL_SOCKET QMP_SOCKET
"""
import json
import socket
import sys
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

    def execute(self, command, arguments):
        self.file.write(json.dumps({"execute": command, "arguments": arguments}).encode() + b"\n")
        return self.read()


def main():
    control_path, qmp_path = sys.argv[1], sys.argv[2]
    control = connect(control_path)
    qmp = QMP(qmp_path)
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
