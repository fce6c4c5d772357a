#!/usr/bin/env python3
"""Berth vs containerd 1.6, measured alternately in one run (A B A B ...), printing medians and ratios.

Figures (issue: Backbone):
  cold start   exec of the daemon on a fresh root until the API answers Version
  idle RSS     VmRSS of the daemon 5 s after start
  1000 calls   1,000 sequential Version calls over one connection
The client is Python grpcio sending raw bytes, so neither daemon gets a client of its own language.
"""
import argparse, os, shutil, signal, statistics, subprocess, tempfile, time

import grpc

VERSION = "/containerd.services.version.v1.Version/Version"


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


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--berth-bin", required=True)
    p.add_argument("--rounds", type=int, default=10)
    a = p.parse_args()
    berth = Daemon("berth", [os.path.join(a.berth_bin, "berthd")], config_berth)
    ctrd = Daemon("containerd", ["containerd"], config_containerd)
    results = {d.name: {"start": [], "rss": [], "calls": []} for d in (berth, ctrd)}
    for r in range(a.rounds):
        for d in ((berth, ctrd) if r % 2 == 0 else (ctrd, berth)):
            results[d.name]["start"].append(d.start())
            if r < 3:  # RSS needs the 5 s idle wait; three samples are enough
                time.sleep(5)
                results[d.name]["rss"].append(d.rss_mb())
            d.calls(50)  # warm the connection
            results[d.name]["calls"].append(d.calls(1000))
            d.stop()
    med = {n: {k: statistics.median(v) for k, v in f.items()} for n, f in results.items()}
    b, c = med["berth"], med["containerd"]
    print(f"rounds: {a.rounds} (alternating), medians")
    print(f"{'figure':<28}{'berth':>12}{'containerd':>14}{'ratio':>9}")
    rows = [("cold start to Version (ms)", "start", 1000), ("idle VmRSS (MB)", "rss", 1), ("1000 Version calls (ms)", "calls", 1000)]
    for label, key, scale in rows:
        print(f"{label:<28}{b[key]*scale:>12.1f}{c[key]*scale:>14.1f}{b[key]/c[key]:>8.2f}x")


if __name__ == "__main__":
    main()
