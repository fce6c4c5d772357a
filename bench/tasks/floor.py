#!/usr/bin/env python3
"""The client's own share of `ctr run --rm`: what ctr costs against a server that costs nothing.

1. A recording proxy sits between ctr and containerd 1.6 (+ runc) for one `ctr run --rm busybox <id> /bin/true`;
   it keeps every response, per method, in call order.
2. A canned server replays those responses, unchanged and without any work, to the same ctr command line. No
   shim, runtime, snapshot or container exists: the time is ctr's start-up, its protobuf and gRPC work, its
   stdio FIFOs and its exit, plus a Python gRPC server's per-call cost (so it is an upper bound of the floor).
3. Prints the medians of ctr against containerd and against the canned server, their ratio, and the ratio with
   the canned server's own CPU time taken off: ctr's share, which no server, and so no container engine, can
   remove from `ctr run --rm`.
"""
import argparse, os, re, statistics, subprocess, sys, tempfile, threading, time
from concurrent import futures

import grpc

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from bench import CtrDaemon, config_containerd  # noqa: E402

IMAGE = "docker.io/library/busybox:latest"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STREAMING = {"/containerd.services.content.v1.Content/Read", "/containerd.services.events.v1.Events/Subscribe"}
PASSED = ("containerd-namespace", "containerd-lease")


class Recorder(grpc.GenericRpcHandler):
    """Forwards raw bytes to `upstream` and records each method's responses in order."""

    def __init__(self, upstream):
        self.channel = grpc.insecure_channel(f"unix://{upstream}")
        self.calls = {}
        self.lock = threading.Lock()

    def service(self, details):
        method = details.method
        meta = tuple((k, v) for k, v in details.invocation_metadata if k in PASSED)
        if method in STREAMING:
            call = self.channel.unary_stream(method, request_serializer=None, response_deserializer=None)

            def stream(request, context):
                out = list(call(request, metadata=meta, timeout=60))
                self.keep(method, out)
                return iter(out)
            return grpc.unary_stream_rpc_method_handler(stream)
        call = self.channel.unary_unary(method, request_serializer=None, response_deserializer=None)

        def unary(request, context):
            try:
                out = call(request, metadata=meta, timeout=60)
            except grpc.RpcError as e:
                self.keep(method, (e.code(), e.details()))
                context.abort(e.code(), e.details())
            self.keep(method, out)
            return out
        return grpc.unary_unary_rpc_method_handler(unary)

    def keep(self, method, answer):
        with self.lock:
            self.calls.setdefault(method, []).append(answer)


class Canned(grpc.GenericRpcHandler):
    """Answers each method with the recorded responses in the recorded order, doing nothing else."""

    def __init__(self, calls):
        self.calls = calls
        self.next = {}
        self.lock = threading.Lock()

    def answer(self, method):
        with self.lock:
            i = self.next.get(method, 0)
            self.next[method] = i + 1
        return self.calls[method][i]

    def service(self, details):
        method = details.method
        if method not in self.calls:
            return None
        if method in STREAMING:
            return grpc.unary_stream_rpc_method_handler(lambda request, context: iter(self.answer(method)))

        def unary(request, context):
            out = self.answer(method)
            if isinstance(out, tuple):
                context.abort(*out)
            return out
        return grpc.unary_unary_rpc_method_handler(unary)


def serve(handler, socket):
    server = grpc.server(futures.ThreadPoolExecutor(8))
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"unix://{socket}")
    server.start()
    return server


def recreate_upper(answers):
    """Makes the `upperdir` and `workdir` directories named in recorded Mounts answers; returns them."""
    made = []
    for answer in answers:
        for option in re.findall(rb"(?:upperdir|workdir)=([^,\"\x00-\x1f]+)", answer):
            path = option.decode()
            if not os.path.isdir(path):
                os.makedirs(path)
                made.append(path)
    return made


def run(socket, cid):
    t0 = time.perf_counter()
    done = subprocess.run(["ctr", "--address", socket, "run", "--rm", IMAGE, cid, "/bin/true"],
                          capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        sys.exit(f"ctr run against {socket} failed: {done.stderr.strip()}")
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args()
    archive = "/var/tmp/berth-bench-busybox.tar"
    subprocess.run([os.path.join(ROOT, "scripts", "busybox-image.sh"), archive, IMAGE], check=True)
    ctrd = CtrDaemon("containerd", ["containerd"], config_containerd)
    ctrd.start()
    work = tempfile.mkdtemp(prefix="berth-floor-", dir="/var/tmp")
    try:
        ctrd.ctr("images", "import", archive)
        real = []
        for i in range(args.runs + 1):
            real.append(run(ctrd.socket, f"r{i}"))
        # Record one run, every call through the proxy; the canned runs reuse its container id.
        recorder = Recorder(ctrd.socket)
        proxy = serve(recorder, os.path.join(work, "proxy.sock"))
        run(os.path.join(work, "proxy.sock"), "canned")
        proxy.stop(None)
        # containerd stops here, before its garbage collector removes the recorded container's snapshot; its
        # directory stays until the end.
        ctrd.proc.terminate()
        ctrd.proc.wait(20)
        # ctr mounts the container's rootfs itself (to read /etc/group for the additional gids): the recorded
        # Mounts answer names containerd's snapshot directories, so the removed writable ones are made again.
        upper = recreate_upper(recorder.calls["/containerd.services.snapshots.v1.Snapshots/Mounts"])
        canned, served = [], []
        for i in range(args.runs + 1):
            server = serve(Canned(recorder.calls), os.path.join(work, "canned.sock"))
            try:
                cpu = time.process_time()  # this process's CPU: the canned server's (the caller only waits)
                canned.append(run(os.path.join(work, "canned.sock"), "canned"))
                served.append(time.process_time() - cpu)
            finally:
                server.stop(None)
        for d in upper:
            subprocess.run(["rm", "-rf", d], check=True)
    finally:
        ctrd.stop()
        subprocess.run(["rm", "-rf", work], check=True)
    calls = sum(len(v) for v in recorder.calls.values())
    c, f = statistics.median(real[1:]) * 1000, statistics.median(canned[1:]) * 1000
    s = statistics.median(served[1:]) * 1000
    print(f"\n`ctr run --rm {IMAGE} ID /bin/true`, {args.runs} runs each, medians; {calls} calls recorded")
    print(f"{'against containerd 1.6 + runc':40s} {c:8.1f} ms")
    print(f"{'against a canned server (no work)':40s} {f:8.1f} ms")
    print(f"{'  of which the canned server CPU':40s} {s:8.1f} ms")
    print(f"{'floor: canned / containerd':40s} {f / c:8.2f}x")
    print(f"{'floor without the server CPU':40s} {(f - s) / c:8.2f}x")


if __name__ == "__main__":
    main()
