"""Source of the lab's shim stand-in, written next to the lab as `containerd-shim-kata-v2`.

Like Kata's Go shim it connects to the VM's `qmp.sock` after boot, keeps the connection for the
VM's whole life and runs `query-status` every 5 s, so QEMU's one-client rule bites in the lab
exactly as on a node. It appends one line per answer to `shim.log` next to the socket and exits
when QEMU goes away. Like Kata's shim it listens on its management socket
(`shim-monitor.sock` in the sandbox's state directory, given in KATA_TOP_LAB_SHIM_MONITOR),
accepting and closing connections (it speaks no protocol), and removes it when it exits.
Standalone on purpose: it must not import kata_top.
"""

SOURCE = r'''#!/usr/bin/env python3
import json, os, socket, sys, threading, time

def serve_monitor(path):
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(16)
    def loop():
        while True:
            try:
                conn, _ = srv.accept()
                conn.close()
            except OSError:
                return
    threading.Thread(target=loop, daemon=True).start()

def main():
    monitor = os.environ.get("KATA_TOP_LAB_SHIM_MONITOR")
    if monitor:
        try:
            serve_monitor(monitor)
        except OSError:  # as Kata's shim: "failed to create listener", and it carries on
            monitor = None
    try:
        return run()
    finally:
        if monitor:
            try:
                os.unlink(monitor)
            except OSError:
                pass

def run():
    args = sys.argv[1:]
    sock_path = args[args.index("-qmp") + 1]
    log = os.path.join(os.path.dirname(sock_path), "shim.log")
    interval = float(os.environ.get("KATA_TOP_LAB_SHIM_INTERVAL", "5"))
    s = None
    for _ in range(200):
        try:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(sock_path)
            break
        except OSError:
            s.close()
            s = None
            time.sleep(0.05)
    if s is None:
        return 1
    f = s.makefile("rwb", buffering=0)
    def call(cmd):
        f.write(json.dumps({"execute": cmd}).encode() + b"\n")
        while True:
            line = f.readline()
            if not line:
                raise EOFError
            msg = json.loads(line)
            if "return" in msg or "error" in msg:
                return msg
    try:
        json.loads(f.readline())  # greeting
        call("qmp_capabilities")
        n = 0
        while True:
            msg = call("query-status")
            n += 1
            status = msg.get("return", {}).get("status", "error")
            with open(log, "a") as fh:
                fh.write(f"{time.time():.3f} {n} {status}\n")
            time.sleep(interval)
    except (EOFError, OSError, ValueError):
        return 0

if __name__ == "__main__":
    sys.exit(main())
'''
