#!/usr/bin/env python3
"""Berth vs containerd 1.6, measured alternately in one run (A B A B ...), printing medians and ratios.

Figures, issue Backbone:
  cold start   exec of the daemon on a fresh root until the API answers Version
  idle RSS     VmRSS of the daemon 5 s after start
  1000 calls   1,000 sequential Version calls over one connection
Figures, issue Content:
  ingest 1 GiB  `ctr content ingest` of a 1 GiB random file
  ls 10k        `ctr content ls` with 10,000 blobs in the namespace
  List 10k      the same listing as a raw List call (server time plus grpcio's receive)
  ctr floor     `ctr content ls` against a canned server replaying containerd's recorded List answer: what ctr
                itself spends (start-up, decoding, printing), which no daemon can remove
The client is Python grpcio sending raw bytes (and Debian's ctr), so neither daemon gets a client of its own.
"""
import argparse, os, shutil, signal, statistics, subprocess, tempfile, time

import grpc

VERSION = "/containerd.services.version.v1.Version/Version"
WRITE = "/containerd.services.content.v1.Content/Write"
LIST = "/containerd.services.content.v1.Content/List"
NS = (("containerd-namespace", "default"),)


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(number, value):
    """Protobuf encoding of one field: ints as varints, str/bytes length-delimited."""
    if isinstance(value, int):
        return varint(number << 3) + varint(value)
    data = value.encode() if isinstance(value, str) else value
    return varint(number << 3 | 2) + varint(len(data)) + data


def commit_request(ref, data, labels):
    """A single WriteContentRequest that writes and commits (action COMMIT = 2)."""
    msg = field(1, 2) + field(2, ref) + field(3, len(data)) + field(6, data)
    for k, v in labels.items():
        msg += field(7, field(1, k) + field(2, v))
    return msg


def config_containerd(d):
    text = subprocess.run(["containerd", "config", "default"], check=True, capture_output=True, text=True).stdout
    text = text.replace('disabled_plugins = []', 'disabled_plugins = ["io.containerd.grpc.v1.cri"]')
    text = text.replace('root = "/var/lib/containerd"', f'root = "{d}/root"')
    text = text.replace('state = "/run/containerd"', f'state = "{d}/state"')
    text = text.replace('address = "/run/containerd/containerd.sock"', f'address = "{d}/d.sock"')
    text = text.replace('path = "/opt/containerd"', f'path = "{d}/opt"')
    return text


def config_berth(d):
    return f'version = 3\nroot = "{d}/root"\nstate = "{d}/state"\n[grpc]\n  address = "{d}/d.sock"\n'


def mount_fresh_ext4(directory, size="4G", journal=False):
    """Mounts a new ext4 (a loop file `directory`.img) on `directory`; without a journal by default, as this
    machine's root. Why: ext4 without a journal scans every inode freed in the last minutes (`recently_deleted`)
    when it allocates one, so on the shared root a create cost ~300 µs instead of ~15 µs right after earlier runs
    or tests deleted files, and both daemons paid that the same. Remove the image after unmounting."""
    subprocess.run(["truncate", "-s", size, directory + ".img"], check=True)
    features = [] if journal else ["-O", "^has_journal"]
    subprocess.run(["mkfs.ext4", "-q", "-F", *features, "-E", "lazy_itable_init=0", directory + ".img"], check=True)
    subprocess.run(["mount", "-o", "loop", directory + ".img", directory], check=True)


class CtrDaemon:
    """A daemon on a fresh directory under /var/tmp, driven with Debian's ctr (the images and tasks benches).
    With `fresh_fs`, that directory is a new ext4 file system (a loop file, no journal, as this machine's root)."""

    def __init__(self, name, argv, config, fresh_fs=False):
        self.name, self.argv, self.config, self.fresh_fs = name, argv, config, fresh_fs

    def start(self):
        self.dir = tempfile.mkdtemp(prefix=f"bench-{self.name}-", dir="/var/tmp")
        if self.fresh_fs:
            mount_fresh_ext4(self.dir)
        path = os.path.join(self.dir, "config.toml")
        with open(path, "w") as f:
            f.write(self.config(self.dir))
        self.socket = os.path.join(self.dir, "d.sock")
        self.proc = subprocess.Popen(self.argv + ["--config", path], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(1000):
            if self.ctr("version", check=False).returncode == 0:
                return
            time.sleep(0.01)
        raise RuntimeError(f"{self.name} did not start")

    # Seconds any one ctr command may take: a daemon that stops answering fails the bench instead of hanging it.
    deadline = 600

    def ctr(self, *args, check=True):
        return subprocess.run(["ctr", "--address", self.socket, *args], check=check, capture_output=True, text=True,
                              timeout=self.deadline)

    def timed(self, *args):
        return timed(["ctr", "--address", self.socket, *args], timeout=self.deadline)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        subprocess.run(f"grep -o ' {self.dir}[^ ]*' /proc/self/mounts | sort -r | xargs -r -n1 umount -l",
                       shell=True, stderr=subprocess.DEVNULL)
        if self.fresh_fs:
            os.remove(self.dir + ".img")
        shutil.rmtree(self.dir, ignore_errors=True)


def timed(argv, timeout=None):
    """Wall time of one command that must succeed."""
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, timeout=timeout)
    return time.perf_counter() - t0


class Daemon:
    def __init__(self, name, argv, config):
        self.name, self.argv, self.config = name, argv, config

    def start(self):
        self.dir = tempfile.mkdtemp(prefix=f"bench-{self.name}-", dir="/tmp")
        path = os.path.join(self.dir, "config.toml")
        with open(path, "w") as f:
            f.write(self.config(self.dir))
        self.socket = os.path.join(self.dir, "d.sock")
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(self.argv + ["--config", path], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while not os.path.exists(self.socket):
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited")
            time.sleep(0.0005)
        self.channel = grpc.insecure_channel(f"unix://{self.socket}")
        call = self.channel.unary_unary(VERSION, request_serializer=None, response_deserializer=None)
        while True:
            try:
                call(b"", timeout=1)
                break
            except grpc.RpcError:
                time.sleep(0.0005)
        self.call = call
        return time.perf_counter() - t0

    def rss_mb(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024

    def calls(self, n):
        t0 = time.perf_counter()
        for _ in range(n):
            self.call(b"")
        return time.perf_counter() - t0

    def put_blobs(self, count):
        write = self.channel.stream_stream(WRITE, request_serializer=None, response_deserializer=None)
        for i in range(count):
            data = f"{self.name}-blob-{i}".encode()
            for _ in write(iter([commit_request(f"b{i}", data, {"containerd.io/gc.root": "bench"})]), metadata=NS):
                pass

    def list_raw(self):
        """One raw List call; returns (seconds, the response messages as bytes)."""
        call = self.channel.unary_stream(LIST, request_serializer=None, response_deserializer=None)
        t0 = time.perf_counter()
        messages = list(call(b"", metadata=NS))
        return time.perf_counter() - t0, messages

    def ctr(self, *args, stdin=None):
        t0 = time.perf_counter()
        subprocess.run(["ctr", "--address", self.socket, *args], check=True, stdin=stdin, stdout=subprocess.DEVNULL)
        return time.perf_counter() - t0

    def stop(self):
        self.channel.close()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        subprocess.run(["umount", "-R", self.dir], stderr=subprocess.DEVNULL)
        shutil.rmtree(self.dir, ignore_errors=True)


def backbone(berth, ctrd, rounds):
    results = {d.name: {"start": [], "rss": [], "calls": []} for d in (berth, ctrd)}
    for r in range(rounds):
        for d in ((berth, ctrd) if r % 2 == 0 else (ctrd, berth)):
            results[d.name]["start"].append(d.start())
            if r < 3:  # RSS needs the 5 s idle wait; three samples are enough
                time.sleep(5)
                results[d.name]["rss"].append(d.rss_mb())
            d.calls(50)  # warm the connection
            results[d.name]["calls"].append(d.calls(1000))
            d.stop()
    return results, [("cold start to Version (ms)", "start", 1000), ("idle VmRSS (MB)", "rss", 1),
                     ("1000 Version calls (ms)", "calls", 1000)]


def content(berth, ctrd, rounds):
    big = "/tmp/bench-1g.bin"
    if not os.path.exists(big) or os.path.getsize(big) != 1 << 30:
        subprocess.run(f"head -c 1G /dev/urandom > {big}", shell=True, check=True)
    results = {d.name: {"ingest": [], "ls": []} for d in (berth, ctrd)}
    for r in range(rounds):
        for d in ((berth, ctrd) if r % 2 == 0 else (ctrd, berth)):
            d.start()
            with open(big, "rb") as f:
                results[d.name]["ingest"].append(d.ctr("content", "ingest", f"big-{r}", stdin=f))
            d.stop()
    for d in (berth, ctrd):
        d.start()
        d.put_blobs(10_000)
        d.ctr("content", "ls")  # warm
        d.list_raw()
    recorded = None
    for d in (berth, ctrd):
        results[d.name]["ls"], results[d.name]["list"] = [], []
    for r in range(10):  # alternate the listings too
        for d in ((berth, ctrd) if r % 2 == 0 else (ctrd, berth)):
            results[d.name]["ls"].append(d.ctr("content", "ls"))
            seconds, messages = d.list_raw()
            results[d.name]["list"].append(seconds)
            if d is ctrd:
                recorded = messages
    for d in (berth, ctrd):
        d.stop()
    floor = ctr_floor(recorded)
    print(f"ctr floor (canned List answer of containerd, 10k blobs): {statistics.median(floor)*1000:.1f} ms")
    return results, [("ctr content ingest 1 GiB (s)", "ingest", 1), ("ctr content ls, 10k blobs (ms)", "ls", 1000),
                     ("raw List, 10k blobs (ms)", "list", 1000)]


def ctr_floor(messages, runs=10):
    """Times `ctr content ls` against a grpcio server that replays `messages` for List: ctr's own share."""
    from concurrent import futures
    d = tempfile.mkdtemp(prefix="bench-canned-", dir="/tmp")
    sock = os.path.join(d, "canned.sock")
    handler = grpc.method_handlers_generic_handler("containerd.services.content.v1.Content", {
        "List": grpc.unary_stream_rpc_method_handler(
            lambda req, ctx: iter(messages), request_deserializer=None, response_serializer=None)})
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), handlers=[handler])
    server.add_insecure_port(f"unix://{sock}")
    server.start()
    try:
        out = []
        for _ in range(runs + 1):
            t0 = time.perf_counter()
            subprocess.run(["ctr", "--address", sock, "content", "ls"], check=True, stdout=subprocess.DEVNULL)
            out.append(time.perf_counter() - t0)
        return out[1:]
    finally:
        server.stop(None)
        shutil.rmtree(d, ignore_errors=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--berth-bin", required=True)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--only", choices=["backbone", "content"], default=None)
    a = p.parse_args()
    berth = Daemon("berth", [os.path.join(a.berth_bin, "berthd")], config_berth)
    ctrd = Daemon("containerd", ["containerd"], config_containerd)
    for name, fn, rounds in (("backbone", backbone, a.rounds), ("content", content, max(3, a.rounds // 3))):
        if a.only and a.only != name:
            continue
        results, rows = fn(berth, ctrd, rounds)
        med = {n: {k: statistics.median(v) for k, v in f.items() if v} for n, f in results.items()}
        b, c = med["berth"], med["containerd"]
        print(f"== {name}: {rounds} rounds (alternating), medians")
        print(f"{'figure':<34}{'berth':>12}{'containerd':>14}{'ratio':>9}")
        for label, key, scale in rows:
            print(f"{label:<34}{b[key]*scale:>12.1f}{c[key]*scale:>14.1f}{b[key]/c[key]:>8.2f}x")


if __name__ == "__main__":
    main()
