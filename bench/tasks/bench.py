#!/usr/bin/env python3
"""Containers and tasks: Berth vs containerd 1.6 + runc, in one run, rounds alternating (A B, B A, ...).

Cases (Debian's ctr is the client of both daemons; the image is scripts/busybox-image.sh's, imported into each):
  run --rm        `ctr run --rm busybox r<i> /bin/true`, one at a time (median)
  ctr CPU         the CPU time of those ctr processes themselves (their rusage): a cost no engine can remove, so
                  ctr CPU / containerd's run --rm is printed as the floor of the run --rm ratio
  task create     Tasks.Create of a created container (`/bin/true`), rootfs from Snapshots.Mounts, over gRPC
  task start      Tasks.Start of that task
  task delete     Tasks.Delete once it has exited (Wait first, not timed)
  runtime alone   the daemon's runtime binary (berth-runc; containerd's runc) run by hand on a container that ctr
                  created (its spec, its snapshot mounted): `create`, `start`, `delete --force`, one after the
                  other, with no daemon or shim. Added to ctr's own CPU, it is printed as the floor of the run --rm
                  ratio for any engine that runs a runtime binary per task step, as the shim v2 runc model does.
                  The CPU of its create + start (the runtime's share of `run -d`), times 20, plus ctr's own CPU in
                  the 20 at once, over the machine's CPUs, is printed as the floor of the 20-at-once ratio
  shim RSS        VmRSS of the shim serving one running container (`sleep`), 20 s after `ctr run -d`
  20 at once      wall time of 20 concurrent `ctr run -d ... sleep 600`, and the CPU time of those ctr processes
  daemon RSS      VmRSS of the daemon with those 20 containers running
berthd runs its own shim (berth-shim) and runtime (berth-runc); containerd runs containerd-shim-runc-v2 and runc.
Each daemon start uses its own namespace, so runc roots (/run/containerd/runc/<ns>) never collide between rounds.
Every ctr and gRPC call has a deadline: a daemon that stops answering fails the bench instead of hanging it.
The load average is sampled around each daemon's part and printed per daemon.
"""
import argparse, json, os, resource, shutil, statistics, subprocess, sys, tempfile, threading, time
from concurrent.futures import ThreadPoolExecutor

import grpc

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from bench import CtrDaemon, config_berth, config_containerd, field  # noqa: E402

IMAGE = "docker.io/library/busybox:latest"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TASKS = "/containerd.services.tasks.v1.Tasks/"
MOUNTS = "/containerd.services.snapshots.v1.Snapshots/Mounts"
DEADLINE = 120  # seconds, for any one call


def run_waited(argv, **kwargs):
    """Runs `argv` to its end, killed after DEADLINE seconds; returns its exit status. Unlike subprocess.run's
    timeout, which waits for a child without pipes by polling with doubling sleeps (0.5, 1, 2, 4 ms...) and so
    rounds every time up, this blocks in waitpid."""
    proc = subprocess.Popen(argv, **kwargs)
    timer = threading.Timer(DEADLINE, proc.kill)
    timer.start()
    try:
        return proc.wait()
    finally:
        timer.cancel()


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def children_cpu():
    """User + system CPU seconds of this process's waited-for children (ctr; the daemons are waited for last)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def load1():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


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


def length_delimited(message, number):
    """The raw values of length-delimited field `number` in a protobuf message."""
    out, i = [], 0
    while i < len(message):
        key, i = varint_at(message, i)
        kind = key & 7
        if kind == 0:
            _, i = varint_at(message, i)
        elif kind == 2:
            size, i = varint_at(message, i)
            if key >> 3 == number:
                out.append(message[i:i + size])
            i += size
        elif kind == 1:
            i += 8
        elif kind == 5:
            i += 4
        else:
            raise ValueError(f"wire type {kind}")
    return out


def varint_at(data, i):
    value, shift = 0, 0
    while True:
        b = data[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, i


class Daemon(CtrDaemon):
    starts = 0

    def start_with(self, archive):
        Daemon.starts += 1
        self.namespace = f"bench-{self.name}-{os.getpid()}-{Daemon.starts}"
        self.start()
        self.metadata = (("containerd-namespace", self.namespace),)
        self.channel = grpc.insecure_channel(f"unix://{self.socket}")
        self.ctr("images", "import", archive)

    def ctr(self, *args, check=True):
        return subprocess.run(["ctr", "--address", self.socket, "--namespace", getattr(self, "namespace", "default"),
                               *args], check=check, capture_output=True, text=True, timeout=DEADLINE)

    def timed(self, *args):
        t0 = time.perf_counter()
        self.ctr(*args)
        return time.perf_counter() - t0

    def call(self, path, request):
        method = self.channel.unary_unary(path, request_serializer=None, response_deserializer=None)
        return method(request, metadata=self.metadata, timeout=DEADLINE)

    def lifecycle(self, cid):
        """Times task create, start and delete of a created container running /bin/true."""
        self.ctr("containers", "create", IMAGE, cid, "/bin/true")
        mounts = length_delimited(self.call(MOUNTS, field(1, "overlayfs") + field(2, cid)), 1)
        create = field(1, cid) + b"".join(field(3, m) for m in mounts)
        t0 = time.perf_counter()
        self.call(TASKS + "Create", create)
        t1 = time.perf_counter()
        self.call(TASKS + "Start", field(1, cid))
        t2 = time.perf_counter()
        self.call(TASKS + "Wait", field(1, cid))
        t3 = time.perf_counter()
        self.call(TASKS + "Delete", field(1, cid))
        t4 = time.perf_counter()
        self.ctr("containers", "rm", cid)
        return t1 - t0, t2 - t1, t4 - t3

    def runtime_alone(self, runtime, cid):
        """Times `runtime`'s create, start and delete --force of a container ctr created, outside the daemon.
        Returns that time and the CPU time of the create and start commands (not of the container's init, which
        is not our child: a lower bound of what `ctr run -d` costs the runtime)."""
        self.ctr("containers", "create", IMAGE, cid, "/bin/true")
        bundle = tempfile.mkdtemp(prefix="bench-bundle-", dir="/var/tmp")
        rootfs = os.path.join(bundle, "rootfs")
        os.mkdir(rootfs)
        try:
            spec = json.loads(self.ctr("containers", "info", cid).stdout)["Spec"]
            spec["root"] = {"path": "rootfs"}
            with open(os.path.join(bundle, "config.json"), "w") as f:
                json.dump(spec, f)
            subprocess.run(["sh", "-c", self.ctr("snapshots", "mounts", rootfs, cid).stdout], check=True)
            base = [runtime, "--root", os.path.join(bundle, "state")]
            # The container keeps the runtime's stdio, so its stderr is a file: a pipe would stay open until it exits.
            with open(os.path.join(bundle, "stderr"), "w+") as err:
                t0, cpu0 = time.perf_counter(), children_cpu()
                for step in (["create", "--bundle", bundle, cid], ["start", cid], ["delete", "--force", cid]):
                    if run_waited(base + step, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err) != 0:
                        err.seek(0)
                        raise RuntimeError(f"{runtime} {step[0]}: {err.read()}")
                    if step[0] == "start":
                        cpu = children_cpu() - cpu0
                return time.perf_counter() - t0, cpu
        finally:
            subprocess.run(["umount", rootfs], check=False, stderr=subprocess.DEVNULL)
            shutil.rmtree(bundle, ignore_errors=True)
            self.ctr("containers", "rm", cid, check=False)

    def remove_all(self, ids):
        for i in ids:
            self.ctr("tasks", "kill", "-s", "KILL", i, check=False)
        time.sleep(0.5)
        for i in ids:
            self.ctr("tasks", "rm", "-f", i, check=False)
            self.ctr("containers", "rm", i, check=False)

    def stop(self):
        if getattr(self, "channel", None):
            self.channel.close()
            self.channel = None
        super().stop()
        try:  # the runtime's state root for this namespace, empty once every container is gone
            os.rmdir(f"/run/containerd/runc/{self.namespace}")
        except OSError:
            pass


def measure(d, r, args, res):
    out = res[d.name]
    d.ctr("run", "--rm", IMAGE, "warm", "/bin/true")
    for i in range(args.runs):
        cpu0 = children_cpu()
        out["run"].append(d.timed("run", "--rm", IMAGE, f"r{r}-{i}", "/bin/true"))
        out["ctrcpu"].append(children_cpu() - cpu0)
    d.lifecycle("lwarm")
    for i in range(args.runs):
        create, start, delete = d.lifecycle(f"l{r}-{i}")
        out["create"].append(create)
        out["start"].append(start)
        out["delete"].append(delete)
    d.runtime_alone(d.runtime, "awarm")
    for i in range(args.runs):
        wall, cpu = d.runtime_alone(d.runtime, f"a{r}-{i}")
        out["alone"].append(wall)
        out["alonecpu"].append(cpu)
    d.ctr("run", "-d", IMAGE, "s1", "sleep", "600")
    # The shim's footprint once it has settled: berth-shim gives back what start-up touched 1 s and 16 s after
    # the last Start (the second time after its idle worker threads exited), so sample after both.
    time.sleep(20)
    out["shim"] += [rss_mb(p) for p in shim_pids("s1")]
    d.remove_all(["s1"])
    ids = [f"p{i}" for i in range(20)]
    t0, cpu0 = time.perf_counter(), children_cpu()
    try:
        with ThreadPoolExecutor(20) as pool:
            list(pool.map(lambda i: d.ctr("run", "-d", IMAGE, i, "sleep", "600"), ids))
        out["twenty"].append(time.perf_counter() - t0)
        out["ctrcpu20"].append(children_cpu() - cpu0)
        time.sleep(1)
        out["rss"].append(rss_mb(d.proc.pid))
    finally:
        d.remove_all(ids)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--berth-bin", required=True)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=10, help="ctr run --rm and task lifecycles per round")
    args = ap.parse_args()
    archive = "/var/tmp/berth-bench-busybox.tar"
    subprocess.run([os.path.join(ROOT, "scripts", "busybox-image.sh"), archive, IMAGE], check=True)
    berth = Daemon("berth", [os.path.join(args.berth_bin, "berthd")], config_berth)
    ctrd = Daemon("containerd", ["containerd"], config_containerd)
    berth.runtime = os.path.join(args.berth_bin, "berth-runc")
    ctrd.runtime = shutil.which("runc") or "/usr/sbin/runc"
    keys = ("run", "ctrcpu", "create", "start", "delete", "alone", "alonecpu", "shim", "twenty", "ctrcpu20", "rss",
            "load")
    res = {d.name: {k: [] for k in keys} for d in (berth, ctrd)}
    rounds = {d.name: {k: [] for k in keys} for d in (berth, ctrd)}  # each round's values, for the ratio's spread
    for r in range(args.rounds):
        for d in ((berth, ctrd) if r % 2 == 0 else (ctrd, berth)):
            before = load1()
            counts = {k: len(v) for k, v in res[d.name].items()}
            d.start_with(archive)
            try:
                measure(d, r, args, res)
            finally:
                d.stop()
            res[d.name]["load"].append((before + load1()) / 2)
            for k, v in res[d.name].items():
                rounds[d.name][k].append(v[counts[k]:])
    rows = [("ctr run --rm /bin/true (ms)", "run", 1000), ("  ctr's own CPU in it (ms)", "ctrcpu", 1000),
            ("task create (ms)", "create", 1000),
            ("task start (ms)", "start", 1000), ("task delete (ms)", "delete", 1000),
            ("runtime alone (ms)", "alone", 1000),
            ("  CPU of create+start in it (ms)", "alonecpu", 1000), ("shim VmRSS (MB)", "shim", 1),
            ("20 ctr run -d at once (s)", "twenty", 1), ("  ctr's own CPU in it (s)", "ctrcpu20", 1),
            ("daemon VmRSS, 20 running (MB)", "rss", 1),
            ("load average (1 min) during", "load", 1)]
    print(f"\n{args.rounds} rounds (alternating), {args.runs} runs each; medians; the range is that of the rounds' ratios")
    print(f"{'case':34s} {'berth':>10s} {'containerd':>11s} {'ratio':>7s}  {'range':>11s}")
    for label, key, scale in rows:
        b, c = res["berth"][key], res["containerd"][key]
        if b and c:
            mb, mc = statistics.median(b) * scale, statistics.median(c) * scale
            print(f"{label:34s} {mb:10.2f} {mc:11.2f} {mb / mc:6.2f}x  {ratio_range(rounds, key)}")
    b, c = res["berth"]["ctrcpu"], res["containerd"]["run"]
    if b and c:
        print(f"floor of the run --rm ratio: ctr's own CPU against berthd / containerd's run --rm = "
              f"{statistics.median(b) / statistics.median(c):.2f}x (about what an engine that took no time at all would reach)")
        a = res["berth"]["alone"]
        if a:
            print(f"  with berth-runc alone added (no daemon, no shim): "
                  f"{(statistics.median(b) + statistics.median(a)) / statistics.median(c):.2f}x")
    b, a, c = res["berth"]["ctrcpu20"], res["berth"]["alonecpu"], res["containerd"]["twenty"]
    if b and a and c:
        cpus = os.cpu_count() or 1
        floor = (statistics.median(b) + 20 * statistics.median(a)) / cpus
        print(f"floor of the 20-at-once ratio: (ctr's CPU + 20 berth-runc create+start) / {cpus} CPUs / containerd's "
              f"time = {floor / statistics.median(c):.2f}x (no daemon, no shim, every CPU busy throughout)")


def ratio_range(rounds, key):
    """Lowest and highest ratio of one round's median to the same round's median of containerd."""
    ratios = [statistics.median(b) / statistics.median(c)
              for b, c in zip(rounds["berth"][key], rounds["containerd"][key]) if b and c and statistics.median(c)]
    return f"{min(ratios):.2f}-{max(ratios):.2f}" if ratios else ""


if __name__ == "__main__":
    main()
