#!/usr/bin/env python3
"""Snapshots: Berth vs containerd 1.6 in one run, rounds alternating (A B B A ...), through the gRPC API.

Cases, per snapshotter (overlayfs, native; btrfs when --btrfs and both daemons' btrfs roots sit on loop-mounted
btrfs file systems):
  100 prepare+commit   100 x (Prepare k_i with no parent, Commit c_i k_i), sequential, one connection
  prepare on 1 MB      20 x Prepare of a child of a committed snapshot holding one 1 MiB file (per-op median)
Every snapshot carries containerd.io/gc.root, so neither daemon's GC removes anything while it is measured.
The client is Python grpcio sending hand-encoded protobuf, the same bytes to both daemons.
File systems (--fs): `root` puts both daemons in /var/tmp on this machine's root (ext4 without a journal, where
creating a directory right after other runs deleted files costs ~300 µs: bench.mount_fresh_ext4); `ext4` gives
each daemon a new ext4 with a journal (mkfs.ext4's default, as on a usual host) on a loop file.
"""
import argparse, os, shutil, signal, statistics, subprocess, sys, tempfile, time

import grpc

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from bench import config_berth, config_containerd, field, mount_fresh_ext4  # noqa: E402

SVC = "/containerd.services.snapshots.v1.Snapshots/"
VERSION = "/containerd.services.version.v1.Version/Version"
NS = (("containerd-namespace", "default"),)
ROOT = {"containerd.io/gc.root": "bench"}


def labels(fieldno, m):
    return b"".join(field(fieldno, field(1, k) + field(2, v)) for k, v in m.items())


def prepare_req(ss, key, parent=""):
    return field(1, ss) + field(2, key) + (field(3, parent) if parent else b"") + labels(4, ROOT)


def commit_req(ss, name, key):
    return field(1, ss) + field(2, name) + field(3, key) + labels(4, ROOT)


class Daemon:
    """One daemon on a directory of its own (on a new journaled ext4 when `fresh`); with `btrfs`, its btrfs
    snapshotter root is a loop-mounted btrfs inside it."""

    def __init__(self, name, argv, config, btrfs, fresh=False):
        self.name, self.argv, self.config, self.btrfs, self.fresh = name, argv, config, btrfs, fresh

    def start(self):
        self.dir = tempfile.mkdtemp(prefix=f"bench-snap-{self.name}-", dir="/var/tmp")
        if self.fresh:
            mount_fresh_ext4(self.dir, journal=True)
        if self.btrfs:
            image = os.path.join(self.dir, "btrfs.img")
            subprocess.run(["truncate", "-s", "2G", image], check=True)
            subprocess.run(["mkfs.btrfs", "-q", image], check=True, stdout=subprocess.DEVNULL)
            mnt = os.path.join(self.dir, "root", "io.containerd.snapshotter.v1.btrfs")
            os.makedirs(mnt)
            subprocess.run(["mount", "-o", "loop", image, mnt], check=True)
        path = os.path.join(self.dir, "config.toml")
        with open(path, "w") as f:
            f.write(self.config(self.dir))
        self.socket = os.path.join(self.dir, "d.sock")
        self.proc = subprocess.Popen(self.argv + ["--config", path], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while not os.path.exists(self.socket):
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited")
            time.sleep(0.001)
        self.channel = grpc.insecure_channel(f"unix://{self.socket}")
        version = self.channel.unary_unary(VERSION, request_serializer=None, response_deserializer=None)
        while True:
            try:
                version(b"", timeout=1)
                break
            except grpc.RpcError:
                time.sleep(0.001)
        self.rpc = {m: self.channel.unary_unary(SVC + m, request_serializer=None, response_deserializer=None)
                    for m in ("Prepare", "Commit", "Remove", "Mounts")}

    def call(self, method, request):
        return self.rpc[method](request, metadata=NS)

    def ctr(self, *args):
        return subprocess.run(["ctr", "--address", self.socket, *args], check=True, capture_output=True, text=True).stdout

    def make_parent(self, ss, size=1 << 20):
        """A committed snapshot `parent1m` holding one file of `size` random bytes, written through a real mount."""
        self.call("Prepare", prepare_req(ss, "parent-src"))
        target = os.path.join(self.dir, "mnt")
        os.makedirs(target, exist_ok=True)
        line = self.ctr("snapshots", "--snapshotter", ss, "mounts", target, "parent-src").strip()
        subprocess.run(line, shell=True, check=True)
        try:
            with open(os.path.join(target, "blob"), "wb") as f:
                f.write(os.urandom(size))
        finally:
            subprocess.run(["umount", target], check=True)
        self.call("Commit", commit_req(ss, "parent1m", "parent-src"))

    def prepare_commit(self, ss, tag, n=100):
        t0 = time.perf_counter()
        for i in range(n):
            self.call("Prepare", prepare_req(ss, f"{tag}-a{i}"))
            self.call("Commit", commit_req(ss, f"{tag}-c{i}", f"{tag}-a{i}"))
        return time.perf_counter() - t0

    def prepare_on_parent(self, ss, tag, n=20):
        times = []
        for i in range(n):
            t0 = time.perf_counter()
            self.call("Prepare", prepare_req(ss, f"{tag}-p{i}", "parent1m"))
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    def stop(self):
        self.channel.close()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        unmount_under(self.dir)
        if self.fresh:
            os.remove(self.dir + ".img")
        shutil.rmtree(self.dir, ignore_errors=True)


def unmount_under(directory):
    """Unmounts every mount at or below `directory`, deepest first (a loop mount's device goes with it)."""
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    for point in sorted((p for p in points if p == directory or p.startswith(directory + "/")), key=len, reverse=True):
        subprocess.run(["umount", point], stderr=subprocess.DEVNULL)


def run(ss, berth, ctrd, rounds):
    results = {d.name: {"pc": [], "pp": []} for d in (berth, ctrd)}
    for d in (berth, ctrd):
        d.start()
        d.make_parent(ss)
        d.prepare_commit(ss, "warm", 10)
    try:
        for r in range(rounds):
            for d in ((berth, ctrd) if r % 2 == 0 else (ctrd, berth)):
                results[d.name]["pc"].append(d.prepare_commit(ss, f"r{r}"))
                results[d.name]["pp"].append(d.prepare_on_parent(ss, f"r{r}"))
    finally:
        for d in (berth, ctrd):
            d.stop()
    return results


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--berth-bin", required=True)
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--snapshotters", default="overlayfs,native")
    p.add_argument("--btrfs", action="store_true", help="also btrfs, on loop-mounted btrfs roots")
    p.add_argument("--fs", default="root,ext4", help="root, ext4 or both (see the module's doc)")
    a = p.parse_args()
    names = a.snapshotters.split(",") + (["btrfs"] if a.btrfs else [])
    print(f"{'case':<48}{'berth':>10}{'containerd':>12}{'ratio':>9}  range of the rounds")
    for fs in a.fs.split(","):
        for ss in names:
            btrfs = ss == "btrfs"
            fresh = fs == "ext4" and not btrfs
            berth = Daemon("berth", [os.path.join(a.berth_bin, "berthd")], config_berth, btrfs, fresh)
            ctrd = Daemon("containerd", ["containerd"], config_containerd, btrfs, fresh)
            res = run(ss, berth, ctrd, a.rounds)
            b = {k: statistics.median(v) for k, v in res["berth"].items()}
            c = {k: statistics.median(v) for k, v in res["containerd"].items()}
            where = "btrfs" if btrfs else fs
            for label, key in ((f"{ss} ({where}): 100 prepare+commit (ms)", "pc"),
                               (f"{ss} ({where}): prepare on 1 MB parent (ms/op)", "pp")):
                # The spread of the rounds' ratios (each round runs both daemons back to back) shows the noise.
                ratios = [x / y for x, y in zip(res["berth"][key], res["containerd"][key])]
                print(f"{label:<48}{b[key]*1000:>10.1f}{c[key]*1000:>12.1f}{b[key]/c[key]:>8.2f}x"
                      f"  {min(ratios):.2f}-{max(ratios):.2f}", flush=True)
        if a.btrfs:
            names = [n for n in names if n != "btrfs"]


if __name__ == "__main__":
    main()
