import Testing
@testable import BerthTOML

/// Output of `containerd config default` from containerd 1.6.20 (Debian 12), verbatim.
let containerdDefaultConfig = #"""
disabled_plugins = []
imports = []
oom_score = 0
plugin_dir = ""
required_plugins = []
root = "/var/lib/containerd"
state = "/run/containerd"
temp = ""
version = 2

[cgroup]
  path = ""

[debug]
  address = ""
  format = ""
  gid = 0
  level = ""
  uid = 0

[grpc]
  address = "/run/containerd/containerd.sock"
  gid = 0
  max_recv_message_size = 16777216
  max_send_message_size = 16777216
  tcp_address = ""
  tcp_tls_ca = ""
  tcp_tls_cert = ""
  tcp_tls_key = ""
  uid = 0

[metrics]
  address = ""
  grpc_histogram = false

[plugins]

  [plugins."io.containerd.gc.v1.scheduler"]
    deletion_threshold = 0
    mutation_threshold = 100
    pause_threshold = 0.02
    schedule_delay = "0s"
    startup_delay = "100ms"

  [plugins."io.containerd.grpc.v1.cri"]
    device_ownership_from_security_context = false
    disable_apparmor = false
    disable_cgroup = false
    disable_hugetlb_controller = true
    disable_proc_mount = false
    disable_tcp_service = true
    enable_selinux = false
    enable_tls_streaming = false
    enable_unprivileged_icmp = false
    enable_unprivileged_ports = false
    ignore_image_defined_volumes = false
    max_concurrent_downloads = 3
    max_container_log_line_size = 16384
    netns_mounts_under_state_dir = false
    restrict_oom_score_adj = false
    sandbox_image = "registry.k8s.io/pause:3.6"
    selinux_category_range = 1024
    stats_collect_period = 10
    stream_idle_timeout = "4h0m0s"
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
    systemd_cgroup = false
    tolerate_missing_hugetlb_controller = true
    unset_seccomp_profile = ""

    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "/opt/cni/bin"
      conf_dir = "/etc/cni/net.d"
      conf_template = ""
      ip_pref = ""
      max_conf_num = 1

    [plugins."io.containerd.grpc.v1.cri".containerd]
      default_runtime_name = "runc"
      disable_snapshot_annotations = true
      discard_unpacked_layers = false
      ignore_rdt_not_enabled_errors = false
      no_pivot = false
      snapshotter = "overlayfs"

      [plugins."io.containerd.grpc.v1.cri".containerd.default_runtime]
        base_runtime_spec = ""
        cni_conf_dir = ""
        cni_max_conf_num = 0
        container_annotations = []
        pod_annotations = []
        privileged_without_host_devices = false
        runtime_engine = ""
        runtime_path = ""
        runtime_root = ""
        runtime_type = ""

        [plugins."io.containerd.grpc.v1.cri".containerd.default_runtime.options]

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes]

        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
          base_runtime_spec = ""
          cni_conf_dir = ""
          cni_max_conf_num = 0
          container_annotations = []
          pod_annotations = []
          privileged_without_host_devices = false
          runtime_engine = ""
          runtime_path = ""
          runtime_root = ""
          runtime_type = "io.containerd.runc.v2"

          [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
            BinaryName = ""
            CriuImagePath = ""
            CriuPath = ""
            CriuWorkPath = ""
            IoGid = 0
            IoUid = 0
            NoNewKeyring = false
            NoPivotRoot = false
            Root = ""
            ShimCgroup = ""
            SystemdCgroup = false

      [plugins."io.containerd.grpc.v1.cri".containerd.untrusted_workload_runtime]
        base_runtime_spec = ""
        cni_conf_dir = ""
        cni_max_conf_num = 0
        container_annotations = []
        pod_annotations = []
        privileged_without_host_devices = false
        runtime_engine = ""
        runtime_path = ""
        runtime_root = ""
        runtime_type = ""

        [plugins."io.containerd.grpc.v1.cri".containerd.untrusted_workload_runtime.options]

    [plugins."io.containerd.grpc.v1.cri".image_decryption]
      key_model = "node"

    [plugins."io.containerd.grpc.v1.cri".registry]
      config_path = ""

      [plugins."io.containerd.grpc.v1.cri".registry.auths]

      [plugins."io.containerd.grpc.v1.cri".registry.configs]

      [plugins."io.containerd.grpc.v1.cri".registry.headers]

      [plugins."io.containerd.grpc.v1.cri".registry.mirrors]

    [plugins."io.containerd.grpc.v1.cri".x509_key_pair_streaming]
      tls_cert_file = ""
      tls_key_file = ""

  [plugins."io.containerd.internal.v1.opt"]
    path = "/opt/containerd"

  [plugins."io.containerd.internal.v1.restart"]
    interval = "10s"

  [plugins."io.containerd.metadata.v1.bolt"]
    content_sharing_policy = "shared"

  [plugins."io.containerd.monitor.v1.cgroups"]
    no_prometheus = false

  [plugins."io.containerd.runtime.v1.linux"]
    no_shim = false
    runtime = "runc"
    runtime_root = ""
    shim = "containerd-shim"
    shim_debug = false

  [plugins."io.containerd.runtime.v2.task"]
    platforms = ["linux/amd64"]
    sched_core = false

  [plugins."io.containerd.service.v1.diff-service"]
    default = ["walking"]

  [plugins."io.containerd.service.v1.tasks-service"]
    rdt_config_file = ""

  [plugins."io.containerd.snapshotter.v1.aufs"]
    root_path = ""

  [plugins."io.containerd.snapshotter.v1.btrfs"]
    root_path = ""

  [plugins."io.containerd.snapshotter.v1.devmapper"]
    async_remove = false
    base_image_size = ""
    discard_blocks = false
    fs_options = ""
    fs_type = ""
    pool_name = ""
    root_path = ""

  [plugins."io.containerd.snapshotter.v1.native"]
    root_path = ""

  [plugins."io.containerd.snapshotter.v1.overlayfs"]
    root_path = ""
    upperdir_label = false

  [plugins."io.containerd.snapshotter.v1.zfs"]
    root_path = ""

[proxy_plugins]

[stream_processors]

  [stream_processors."io.containerd.ocicrypt.decoder.v1.tar"]
    accepts = ["application/vnd.oci.image.layer.v1.tar+encrypted"]
    args = ["--decryption-keys-path", "/etc/containerd/ocicrypt/keys"]
    env = ["OCICRYPT_KEYPROVIDER_CONFIG=/etc/containerd/ocicrypt/ocicrypt_keyprovider.conf"]
    path = "ctd-decoder"
    returns = "application/vnd.oci.image.layer.v1.tar"

  [stream_processors."io.containerd.ocicrypt.decoder.v1.tar.gzip"]
    accepts = ["application/vnd.oci.image.layer.v1.tar+gzip+encrypted"]
    args = ["--decryption-keys-path", "/etc/containerd/ocicrypt/keys"]
    env = ["OCICRYPT_KEYPROVIDER_CONFIG=/etc/containerd/ocicrypt/ocicrypt_keyprovider.conf"]
    path = "ctd-decoder"
    returns = "application/vnd.oci.image.layer.v1.tar+gzip"

[timeouts]
  "io.containerd.timeout.bolt.open" = "0s"
  "io.containerd.timeout.shim.cleanup" = "5s"
  "io.containerd.timeout.shim.load" = "5s"
  "io.containerd.timeout.shim.shutdown" = "3s"
  "io.containerd.timeout.task.state" = "2s"

[ttrpc]
  address = ""
  gid = 0
  uid = 0
"""#

@Suite("containerd config default")
struct ContainerdConfigTests {
    @Test func parsesContainerdDefaultConfig() throws {
        let table = try TOML.parse(containerdDefaultConfig)
        #expect(table.keys == [
            "disabled_plugins", "imports", "oom_score", "plugin_dir", "required_plugins", "root", "state", "temp", "version",
            "cgroup", "debug", "grpc", "metrics", "plugins", "proxy_plugins", "stream_processors", "timeouts", "ttrpc",
        ])
        #expect(table["version"]?.value == .integer(2))
        #expect(table["root"]?.value == .string("/var/lib/containerd"))
        #expect(table[path: ["grpc", "address"]]?.value == .string("/run/containerd/containerd.sock"))
        #expect(table[path: ["grpc", "address"]]?.position == SourcePosition(line: 22, column: 3))
        #expect(table[path: ["grpc", "max_recv_message_size"]]?.value == .integer(16_777_216))

        let plugins = try #require(table["plugins"]?.value.tableValue)
        #expect(plugins.count == 16)
        let cri = try #require(plugins["io.containerd.grpc.v1.cri"]?.value.tableValue)
        #expect(cri.position == SourcePosition(line: 45, column: 3))
        #expect(cri["sandbox_image"]?.value == .string("registry.k8s.io/pause:3.6"))
        #expect(cri[path: ["containerd", "runtimes", "runc", "options", "SystemdCgroup"]]?.value == .boolean(false))
        #expect(cri[path: ["containerd", "default_runtime", "options"]]?.value == .table(TOMLTable()))
        #expect(plugins[path: ["io.containerd.gc.v1.scheduler", "pause_threshold"]]?.value == .float(0.02))
        #expect(plugins[path: ["io.containerd.runtime.v2.task", "platforms"]]?.value == .array([TOMLNode(.string("linux/amd64"))]))
        #expect(table[path: ["timeouts", "io.containerd.timeout.shim.load"]]?.value == .string("5s"))
        let decoder = try #require(table[path: ["stream_processors", "io.containerd.ocicrypt.decoder.v1.tar.gzip"]]?.value.tableValue)
        #expect(decoder["args"]?.value.arrayValue?.count == 2)
        #expect(table["proxy_plugins"]?.value == .table(TOMLTable()))
    }

    @Test func serializesBackToTheSameText() throws {
        let table = try TOML.parse(containerdDefaultConfig)
        let text = table.serialized()
        #expect(text == containerdDefaultConfig + "\n")
        #expect(try TOML.parse(text) == table)
    }

    @Test func decodesIntoBerthConfigWithUnknownKeys() throws {
        var table = try TOML.parse(containerdDefaultConfig)
        // containerd writes `level = ""`, which Berth's level enum rejects with a precise error.
        let error = decodingError { _ = try TOMLDecoder().decode(DaemonConfig.self, from: table, defaults: DaemonConfig()) }
        #expect(error?.description == #"key "debug.level" (line 18): expected one of "trace", "debug", "info", "warn", "error", found """#)
        var debug = try #require(table["debug"]?.value.tableValue)
        debug["level"] = nil
        table["debug"]?.value = .table(debug)
        let decoded = try TOMLDecoder().decode(DaemonConfig.self, from: table, defaults: DaemonConfig())
        #expect(decoded.value.grpc.address == "/run/containerd/containerd.sock")
        #expect(decoded.value.grpc.maxRecvMessageSize == 16_777_216)
        #expect(decoded.value.debug.level == .info)
        #expect(decoded.value.plugins.count == 16)
        #expect(decoded.value.timeouts["io.containerd.timeout.task.state"] == "2s")
        let unknown = decoded.unknownKeys.map { $0.path.joined(separator: ".") }
        #expect(unknown == [
            "imports", "plugin_dir", "required_plugins", "temp", "cgroup",
            "debug.address", "debug.gid", "debug.uid",
            "grpc.max_send_message_size", "grpc.tcp_tls_ca", "grpc.tcp_tls_cert", "grpc.tcp_tls_key",
            "metrics", "stream_processors", "ttrpc",
        ])
        #expect(decoded.unknownKeys.first?.position == SourcePosition(line: 2, column: 1))
    }
}
