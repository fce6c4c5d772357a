import BerthCore

/// `io.containerd.snapshotter.v1.devmapper`: skipped when the kernel has no device-mapper or no `pool_name` is
/// configured (as containerd, whose message is "devmapper not configured"); a bad config is an error naming
/// the key.
public let registration = Registration(
    type: .snapshotter, id: "devmapper",
    summary: "devmapper snapshotter: thin devices in an existing thin-pool (pool_name, base_image_size, fs_type).",
    config: DevmapperConfig.self
) { ic, config in
    if let reason = DeviceMapperSupport.missingReason() { throw PluginSkip(reason) }
    if config.poolName.isEmpty { throw PluginSkip("devmapper not configured") }
    let settings = try config.validated(defaultRoot: ic.root)
    ic.export("root", settings.rootPath)
    return try DevmapperSnapshotter(settings: settings, logger: ic.logger)
}
