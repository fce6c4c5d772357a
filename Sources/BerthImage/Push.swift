import BerthCore
import BerthOCI
import BerthRegistry

extension LocalTransferrer {
    /// Pushes the image `store.name` (its chosen platforms, or all) to `registry.reference`.
    public func push(_ store: ImageStoreSpec, to registry: RegistrySpec, progress: @escaping ProgressSink)
        async throws(BerthError)
    {
        throw .notImplemented("push is not implemented yet")
    }
}
