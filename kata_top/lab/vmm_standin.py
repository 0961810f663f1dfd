"""Source of the lab's VMM stand-in, written next to the lab as `cloud-hypervisor` and
`firecracker` (neither binary is in a registry this project reaches).

It serves the VMM's read-only API as its source defines it, over the unix socket Kata gives
it, with micro_http's connection rules (firecracker-microvm/micro-http src/server.rs, which
both VMMs use): HTTP/1.1, every response `Connection: keep-alive` with a Content-Length, the
server never closes a connection, at most 10 connections — the 11th is sent micro_http's 503
and closed. Cloud Hypervisor (vmm/src/api/openapi/cloud-hypervisor.yaml): GET
/api/v1/vmm.ping, /api/v1/vm.info, /api/v1/vm.counters. Firecracker
(src/firecracker/swagger/firecracker.yaml): GET /, /machine-config, /vm/config.

It holds the sandbox's tap (an fd passed in KATA_TOP_LAB_TAP_FD) and reads it, as the VMM's
net device does, so vm.counters' rx counters are real. It keeps a ledger for tests, rewritten
on each change (KATA_TOP_LAB_VMM_LEDGER): per peer pid (SO_PEERCRED) the most connections it
ever had open at once, every request line, and the 503s it sent.
Standalone on purpose: it must not import kata_top.
"""

SOURCE = r'''#!/usr/bin/env python3
import json, os, selectors, socket, struct, sys, threading, time

MAX_CONNECTIONS = 10
FULL = (b"HTTP/1.1 503\r\nServer: Firecracker API\r\nConnection: close\r\n"
        b"Content-Length: 40\r\n\r\n{ \"error\": \"Too many open connections\" }")
CFG = json.loads(os.environ.get("KATA_TOP_LAB_VMM", "{}"))
KIND = "clh" if os.path.basename(sys.argv[0]) == "cloud-hypervisor" else "firecracker"
counters = {"rx_bytes": 0, "rx_frames": 0, "tx_bytes": 0, "tx_frames": 0}
ledger = {"kind": KIND, "max_by_pid": {}, "requests": [], "full": 0}
open_by_pid = {}

def arg(flag):
    a = sys.argv[1:]
    return a[a.index(flag) + 1] if flag in a else None

def save_ledger():
    path = os.environ.get("KATA_TOP_LAB_VMM_LEDGER")
    if path:
        with open(path + ".tmp", "w") as fh:
            json.dump(ledger, fh)
        os.replace(path + ".tmp", path)

def read_tap(fd):
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError:
            return
        if not data:
            return
        counters["rx_bytes"] += len(data)
        counters["rx_frames"] += 1

def bps_bucket(bps):
    # Kata's fc.go: a bandwidth TokenBucket refilled every 1000 ms
    return {"bandwidth": {"size": bps // 8, "refill_time": 1000}} if bps else None

def answer(path):
    mac, tap = CFG.get("mac"), CFG.get("tap")
    vcpus, mem = CFG.get("vcpus", 1), CFG.get("memory_mib", 256)
    if KIND == "clh":
        net = [{"tap": tap, "mac": mac, "id": "_net2", "num_queues": 2, "queue_size": 256,
                "rate_limiter_config": None}] if tap else []
        if path == "/api/v1/vmm.ping":
            return 200, {"build_version": "v48.0-kata-top-lab", "version": "48.0.0",
                         "pid": os.getpid(), "features": ["kvm"]}
        if path == "/api/v1/vm.info":
            return 200, {"config": {"cpus": {"boot_vcpus": vcpus, "max_vcpus": vcpus + 1},
                                    "memory": {"size": mem << 20}, "net": net},
                         "state": "Running", "memory_actual_size": mem << 20}
        if path == "/api/v1/vm.counters":
            return 200, {"_net2": dict(counters)} if tap else {}
        return 404, None
    iface = {"iface_id": "eth0", "host_dev_name": tap, "guest_mac": mac,
             "rx_rate_limiter": bps_bucket(CFG.get("rx_bps", 0)),
             "tx_rate_limiter": bps_bucket(CFG.get("tx_bps", 0))}
    machine = {"vcpu_count": vcpus, "mem_size_mib": mem, "smt": False,
               "track_dirty_pages": False, "huge_pages": "None"}
    if path == "/":
        return 200, {"app_name": "Firecracker", "id": arg("--id") or "anonymous-instance",
                     "state": "Running", "vmm_version": "1.13.0"}
    if path == "/machine-config":
        return 200, machine
    if path == "/vm/config":
        return 200, {"boot-source": {"kernel_image_path": "vmlinux"}, "drives": [],
                     "machine-config": machine, "network-interfaces": [iface] if tap else []}
    return 400, {"fault_message": "Invalid request method and/or path: " + path}

def respond(conn, status, body):
    raw = json.dumps(body).encode() if body is not None else b""
    head = ("HTTP/1.1 %d \r\nServer: Firecracker API\r\nConnection: keep-alive\r\n"
            "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % (status, len(raw)))
    conn.sendall(head.encode() + raw)

def peer_pid(conn):
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[0]

def serve(path):
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        os.unlink(path)
    except OSError:
        pass
    srv.bind(path)
    srv.listen(64)
    sel = selectors.DefaultSelector()
    sel.register(srv, selectors.EVENT_READ)
    conns = {}
    save_ledger()
    while True:
        for key, _ in sel.select():
            if key.fileobj is srv:
                conn, _ = srv.accept()
                if len(conns) >= MAX_CONNECTIONS:
                    conn.sendall(FULL)
                    conn.close()
                    ledger["full"] += 1
                    save_ledger()
                    continue
                pid = peer_pid(conn)
                conns[conn] = [pid, b""]
                open_by_pid[pid] = open_by_pid.get(pid, 0) + 1
                m = ledger["max_by_pid"]
                m[str(pid)] = max(m.get(str(pid), 0), open_by_pid[pid])
                sel.register(conn, selectors.EVENT_READ)
                save_ledger()
                continue
            conn = key.fileobj
            pid, buf = conns[conn]
            try:
                data = conn.recv(65536)
            except OSError:
                data = b""
            if not data:
                sel.unregister(conn)
                conn.close()
                del conns[conn]
                open_by_pid[pid] -= 1
                continue
            buf += data
            while b"\r\n\r\n" in buf:
                head, buf = buf.split(b"\r\n\r\n", 1)
                line = head.split(b"\r\n", 1)[0].decode("latin-1")
                method, _, rest = line.partition(" ")
                target = rest.rsplit(" ", 1)[0]
                length = 0
                for h in head.split(b"\r\n")[1:]:
                    k, _, v = h.decode("latin-1").partition(":")
                    if k.strip().lower() == "content-length" and v.strip().isdigit():
                        length = int(v.strip())
                buf = buf[length:]
                ledger["requests"] = (ledger["requests"] + [[pid, method, target]])[-500:]
                save_ledger()
                if method == "GET":
                    status, body = answer(target)
                else:  # the stand-in changes nothing: any write is answered and recorded
                    status, body = 204, None
                try:
                    respond(conn, status, body)
                except OSError:
                    break
            if conn in conns:
                conns[conn][1] = buf

def vcpu(name):
    import ctypes
    ctypes.CDLL(None).prctl(15, name.encode(), 0, 0, 0)  # PR_SET_NAME
    while True:
        time.sleep(3600)

def retitle(argv):
    """The command line the real VMM has (`ps`, /proc/PID/cmdline): this interpreter's
    argument area rewritten in place, padded with NULs."""
    with open("/proc/self/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    start, end = int(fields[45]), int(fields[46])  # arg_start, arg_end (proc(5))
    new = b"\0".join(a.encode() for a in argv) + b"\0"
    if len(new) <= end - start:
        with open("/proc/self/mem", "r+b", buffering=0) as mem:
            mem.seek(start)
            mem.write(new.ljust(end - start, b"\0"))

def main():
    argv0 = os.environ.get("KATA_TOP_LAB_ARGV0")
    if argv0:
        retitle([argv0] + sys.argv[1:])
    # vCPU thread names: Cloud Hypervisor vmm/src/cpu.rs `vcpu<N>`, Firecracker
    # src/vmm/src/vstate/vcpu.rs `fc_vcpu <N>`
    for n in range(CFG.get("vcpus", 1)):
        name = ("vcpu%d" if KIND == "clh" else "fc_vcpu %d") % n
        threading.Thread(target=vcpu, args=(name,), daemon=True).start()
    fd = os.environ.get("KATA_TOP_LAB_TAP_FD")
    if fd:
        threading.Thread(target=read_tap, args=(int(fd),), daemon=True).start()
    if KIND == "clh":
        path = arg("--api-socket")
    else:
        # jailed: the jailer chroots into the jail and chdirs to its "/"; Firecracker's
        # default API socket /run/firecracker.socket (src/firecracker/src/main.rs)
        path = arg("--api-sock") or os.path.join(os.getcwd(), "run", "firecracker.socket")
    serve(path)

if __name__ == "__main__":
    main()
'''
