#!/usr/bin/env python3
"""Images: pull + unpack into overlayfs, Berth vs containerd 1.6, rounds alternating, same local registry.

Cases (each round starts the daemon on a fresh root, so the content store is cold every time):
  small   a 1 MiB image of one layer
  large   a ~170 MB image of 4 layers (random data and many small files)
The client is Debian's `ctr image pull --plain-http` for both daemons (it fetches into the daemon's content store
and unpacks through the daemon's Diff and Snapshots services). `berth pull` (the daemon pulls through the transfer
service and unpacks while later layers download) is the third column, against berthd; the columns alternate in
each round, so the ratios are paired.

Each daemon runs on a new ext4 file system (a loop file, without a journal, as this machine's root file system).
On a shared file system each round paid for the previous round's clean-up: ext4 without a journal passes over
inodes deleted in the last 60-360 s when it allocates one, checking each in the inode table, so right after a
round's 9,000 files were deleted, creating a file cost ~300 µs instead of ~15 µs, the same seconds for both
daemons. containerd's pull took 4-6 s that way, against 2.08 s when the issue was written.
"""
import argparse, gzip, hashlib, io, json, os, shutil, socket, statistics, subprocess, sys, tarfile, tempfile, time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from bench import CtrDaemon, config_berth, config_containerd, timed  # noqa: E402

CACHE = "/var/tmp/berth-bench-images"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def add_blob(layout, data):
    digest = hashlib.sha256(data).hexdigest()
    with open(os.path.join(layout, "blobs", "sha256", digest), "wb") as f:
        f.write(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def layer(files):
    """files: list of (name, bytes). Returns (gzip bytes, diff id)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        dirs = set()
        for name, data in files:
            parts = name.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                d = "/".join(parts[:i])
                if d not in dirs:
                    dirs.add(d)
                    info = tarfile.TarInfo(d)
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    tar.addfile(info)
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    tar_bytes = raw.getvalue()
    return gzip.compress(tar_bytes, 6, mtime=0), "sha256:" + hashlib.sha256(tar_bytes).hexdigest()


def build_layout(name, layers):
    """An OCI layout under CACHE/name holding one image with the given layers (lists of files)."""
    layout = os.path.join(CACHE, name)
    if os.path.exists(os.path.join(layout, "index.json")):
        return layout
    shutil.rmtree(layout, ignore_errors=True)
    os.makedirs(os.path.join(layout, "blobs", "sha256"))
    descs, diff_ids = [], []
    for files in layers:
        blob, diff_id = layer(files)
        descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **add_blob(layout, blob)})
        diff_ids.append(diff_id)
    config = {"architecture": subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True).stdout.strip(),
              "os": "linux", "config": {"Cmd": ["sh"]}, "rootfs": {"type": "layers", "diff_ids": diff_ids}}
    cdesc = {"mediaType": "application/vnd.oci.image.config.v1+json", **add_blob(layout, json.dumps(config).encode())}
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "config": cdesc,
                "layers": descs}
    mdesc = {"mediaType": "application/vnd.oci.image.manifest.v1+json", **add_blob(layout, json.dumps(manifest).encode()),
             "annotations": {"org.opencontainers.image.ref.name": "latest"}}
    with open(os.path.join(layout, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "manifests": [mdesc]}, f)
    with open(os.path.join(layout, "oci-layout"), "w") as f:
        f.write('{"imageLayoutVersion":"1.0.0"}')
    return layout


def images():
    rnd = lambda n: os.urandom(n)
    small = build_layout("small", [[("data/random.bin", rnd(1 << 20))]])
    large = build_layout("large", [
        [("data/big1.bin", rnd(90 << 20))],
        [(f"small/a{i // 100}/f{i}", rnd(4096)) for i in range(6000)],
        [("data/big2.bin", rnd(50 << 20))],
        [(f"small/b{i // 100}/g{i}", rnd(1024) * 2) for i in range(3000)],
    ])
    return {"small": small, "large": large}


def layout_bytes(layout):
    total = 0
    for f in os.listdir(os.path.join(layout, "blobs", "sha256")):
        total += os.path.getsize(os.path.join(layout, "blobs", "sha256", f))
    return total


class Registry:
    def start(self):
        self.dir = tempfile.mkdtemp(prefix="bench-registry-", dir="/var/tmp")
        self.host = f"127.0.0.1:{free_port()}"
        cfg = os.path.join(self.dir, "config.yml")
        with open(cfg, "w") as f:
            f.write(f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {self.dir}/data\n"
                    f"http:\n  addr: {self.host}\nlog:\n  level: error\n")
        self.proc = subprocess.Popen(["docker-registry", "serve", cfg], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(200):
            try:
                socket.create_connection(tuple([self.host.split(":")[0], int(self.host.split(":")[1])]), 0.1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("docker-registry did not start")

    def push(self, layout, name):
        subprocess.run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false", f"oci:{layout}:latest",
                        f"docker://{self.host}/{name}:latest"], check=True)

    def stop(self):
        self.proc.terminate()
        self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--berth-bin", required=True)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    os.makedirs(CACHE, exist_ok=True)
    layouts = images()
    reg = Registry()
    reg.start()
    try:
        for name, layout in layouts.items():
            reg.push(layout, name)
        berth = CtrDaemon("berth", [os.path.join(args.berth_bin, "berthd")], config_berth, fresh_fs=True)
        ctrd = CtrDaemon("containerd", ["containerd"], config_containerd, fresh_fs=True)
        berth_pull = os.path.join(args.berth_bin, "berth")
        has_berth_pull = subprocess.run([berth_pull, "pull", "--help"], capture_output=True).returncode == 0
        results = {}
        for case in layouts:
            ref = f"{reg.host}/{case}:latest"
            res = {"ctr→berthd": [], "ctr→containerd": [], "berth pull": []}
            for r in range(args.rounds):
                # Paired: every round runs each column once on a fresh daemon root, the order flipping each round.
                order = [(berth, "ctr→berthd"), (ctrd, "ctr→containerd")]
                if has_berth_pull:
                    order.insert(1, (berth, "berth pull"))
                for d, col in (order if r % 2 == 0 else order[::-1]):
                    d.start()
                    if col == "berth pull":
                        res[col].append(timed([berth_pull, "pull", "--address", d.socket, "--plain-http", ref]))
                    else:
                        res[col].append(d.timed("image", "pull", "--plain-http", ref))
                    d.stop()
            results[case] = res
        for case, res in results.items():
            mb = layout_bytes(layouts[case]) / 1e6
            base = statistics.median(res["ctr→containerd"])
            print(f"\n{case} image ({mb:.1f} MB compressed), median of {args.rounds}:")
            for col, vals in res.items():
                if vals:
                    m = statistics.median(vals)
                    print(f"  {col:16s} {m:7.3f} s  {mb / m:7.1f} MB/s  ratio to containerd {m / base:.2f}x")
    finally:
        reg.stop()


if __name__ == "__main__":
    main()
