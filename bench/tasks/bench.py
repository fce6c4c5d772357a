#!/usr/bin/env python3
"""Containers and tasks: Berth vs containerd 1.6 + runc, in one run, rounds alternating.

Cases (Debian's ctr is the client of both daemons; the image is scripts/busybox-image.sh's, imported into each):
  run --rm        `ctr run --rm busybox r<i> /bin/true`, one at a time (median)
  shim RSS        VmRSS of the shim serving one running container (`sleep`)
  20 at once      wall time of 20 concurrent `ctr run -d ... sleep 600`
  daemon RSS      VmRSS of the daemon with those 20 containers running
berthd runs its own shim (berth-shim) and runtime (berth-runc); containerd runs containerd-shim-runc-v2 and runc.
"""
import argparse, os, statistics, subprocess, sys, time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from bench import CtrDaemon, config_berth, config_containerd  # noqa: E402

IMAGE = "docker.io/library/busybox:latest"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def shim_pids(container_id):
    """Long-lived shim processes serving `container_id` (argv holds `-id <id>`, not start/delete)."""
    pids = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open(f"/proc/{p}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if argv and b"shim" in os.path.basename(argv[0]) and b"-id" in argv:
            i = argv.index(b"-id")
            if i + 1 < len(argv) and argv[i + 1].decode() == container_id and b"start" not in argv and b"delete" not in argv:
                pids.append(int(p))
    return pids


class Daemon(CtrDaemon):
    def start_with(self, archive):
        self.start()
        self.ctr("images", "import", archive)

    def remove_all(self, ids):
        for i in ids:
            self.ctr("tasks", "kill", "-s", "KILL", i, check=False)
        time.sleep(0.5)
        for i in ids:
            self.ctr("tasks", "rm", "-f", i, check=False)
            self.ctr("containers", "rm", i, check=False)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--berth-bin", required=True)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=10, help="ctr run --rm per round")
    args = ap.parse_args()
    archive = "/var/tmp/berth-bench-busybox.tar"
    subprocess.run([os.path.join(ROOT, "scripts", "busybox-image.sh"), archive, IMAGE], check=True)
    berth = Daemon("berth", [os.path.join(args.berth_bin, "berthd")], config_berth)
    ctrd = Daemon("containerd", ["containerd"], config_containerd)
    res = {d.name: {"run": [], "shim": [], "twenty": [], "rss": []} for d in (berth, ctrd)}
    for r in range(args.rounds):
        for d in ((berth, ctrd) if r % 2 == 0 else (ctrd, berth)):
            d.start_with(archive)
            try:
                d.ctr("run", "--rm", IMAGE, "warm", "/bin/true")
                for i in range(args.runs):
                    res[d.name]["run"].append(d.timed("run", "--rm", IMAGE, f"r{r}-{i}", "/bin/true"))
                d.ctr("run", "-d", IMAGE, "s1", "sleep", "600")
                time.sleep(1)
                res[d.name]["shim"] += [rss_mb(p) for p in shim_pids("s1")]
                d.remove_all(["s1"])
                ids = [f"p{i}" for i in range(20)]
                t0 = time.perf_counter()
                with ThreadPoolExecutor(20) as pool:
                    list(pool.map(lambda i: d.ctr("run", "-d", IMAGE, i, "sleep", "600"), ids))
                res[d.name]["twenty"].append(time.perf_counter() - t0)
                time.sleep(1)
                res[d.name]["rss"].append(rss_mb(d.proc.pid))
                d.remove_all(ids)
            finally:
                d.stop()
    rows = [("ctr run --rm /bin/true (ms)", "run", 1000), ("shim VmRSS (MB)", "shim", 1),
            ("20 ctr run -d at once (s)", "twenty", 1), ("daemon VmRSS, 20 running (MB)", "rss", 1)]
    print(f"\n{'case':34s} {'berth':>10s} {'containerd':>11s} {'ratio':>7s}")
    for label, key, scale in rows:
        b, c = res["berth"][key], res["containerd"][key]
        if b and c:
            mb, mc = statistics.median(b) * scale, statistics.median(c) * scale
            print(f"{label:34s} {mb:10.2f} {mc:11.2f} {mb / mc:6.2f}x")


if __name__ == "__main__":
    main()
