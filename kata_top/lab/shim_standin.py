"""Source of the lab's shim stand-in, written next to the lab as `containerd-shim-kata-v2`.

Like Kata's Go shim it connects to the VM's `qmp.sock` after boot, keeps the connection for the
VM's whole life and runs `query-status` every 5 s, so QEMU's one-client rule bites in the lab
exactly as on a node. It appends one line per answer to `shim.log` next to the socket and exits
when QEMU goes away. Like Kata's shim it listens on its management socket
(`shim-monitor.sock` in the sandbox's state directory, given in KATA_TOP_LAB_SHIM_MONITOR),
accepting and closing connections (it speaks no protocol), and removes it when it exits.

For the other VMMs it plays what Kata's runtime does there: for Cloud Hypervisor (runtime-rs
ch/inner_hypervisor.rs keeps one UnixStream to the API for the VM's life) and Firecracker it
holds one keep-alive connection to the API socket (KATA_TOP_LAB_SHIM_API) and GETs
KATA_TOP_LAB_SHIM_API_GET on it every interval, exiting when the VMM goes away; it holds
Firecracker's metrics and log FIFOs open for reading as the Go shim does (fc.go
fcListenToFifo; KATA_TOP_LAB_SHIM_FIFOS); and for Dragonball, whose VMM runs inside the
runtime-rs shim, it holds the tap (KATA_TOP_LAB_TAP_FD) and runs one thread per vCPU named
`db_vcpu<N>` (src/dragonball/src/vcpu/vcpu_impl.rs) via prctl(PR_SET_NAME).
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

def name_thread(name):
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(15, name.encode(), 0, 0, 0)  # PR_SET_NAME

def vcpu(n):
    name_thread("db_vcpu%d" % n)
    while True:
        time.sleep(3600)

def hold_tap(fd):
    while True:
        try:
            if not os.read(fd, 65536):
                return
        except OSError:
            return

def connect(sock_path):
    """A connection to the VMM's socket, waiting up to 10 s for the VMM to make it."""
    for _ in range(200):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(sock_path)
            return s
        except OSError:
            s.close()
            time.sleep(0.05)
    return None

def run_api(sock_path, get_path, interval):
    s = connect(sock_path)
    if s is None:
        return 1
    f = s.makefile("rwb", buffering=0)
    try:
        while True:
            f.write(("GET %s HTTP/1.1\r\nHost: localhost\r\n\r\n" % get_path).encode())
            length = 0
            while True:
                line = f.readline()
                if not line:
                    return 0
                if line == b"\r\n":
                    break
                k, _, v = line.decode("latin-1").partition(":")
                if k.lower() == "content-length":
                    length = int(v.strip())
            f.read(length)
            time.sleep(interval)
    except (OSError, ValueError):
        return 0

def run():
    args = sys.argv[1:]
    interval = float(os.environ.get("KATA_TOP_LAB_SHIM_INTERVAL", "5"))
    fifos = [os.open(p, os.O_RDONLY | os.O_NONBLOCK)
             for p in os.environ.get("KATA_TOP_LAB_SHIM_FIFOS", "").split(":") if p]
    if os.environ.get("KATA_TOP_LAB_TAP_FD"):
        threading.Thread(target=hold_tap, args=(int(os.environ["KATA_TOP_LAB_TAP_FD"]),),
                         daemon=True).start()
    for n in range(int(os.environ.get("KATA_TOP_LAB_DB_VCPUS", "0"))):
        threading.Thread(target=vcpu, args=(n,), daemon=True).start()
    if os.environ.get("KATA_TOP_LAB_SHIM_API"):
        return run_api(os.environ["KATA_TOP_LAB_SHIM_API"],
                       os.environ.get("KATA_TOP_LAB_SHIM_API_GET", "/"), interval)
    if "-qmp" not in args:
        while True:  # the VMM is in this process (Dragonball): until stopped
            time.sleep(3600)
    sock_path = args[args.index("-qmp") + 1]
    log = os.path.join(os.path.dirname(sock_path), "shim.log")
    s = connect(sock_path)
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
