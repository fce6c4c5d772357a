import BerthCore
import BerthOCI
import BerthRegistry

/// Deduplicates concurrent downloads of the same blob across pulls (owned by the pull work).
actor PullCoordinator {
    init() {}
}

extension LocalTransferrer {
    /// Pulls `registry.reference` into the image store under a lease, labelling content for GC as containerd, and
    /// unpacks each layer into the snapshotter while later layers still download. Returns the image record.
    public func pull(_ registry: RegistrySpec, into store: ImageStoreSpec, progress: @escaping ProgressSink)
        async throws(BerthError) -> ImageRecord
    {
        throw .notImplemented("pull is not implemented yet")
    }
}
