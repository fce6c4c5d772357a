import BerthCore
import BerthOCI

extension LocalTransferrer {
    /// Reads an OCI layout or `docker save` tar from `stream` into content and creates its images (optionally
    /// unpacking them as `store.unpacks` says). Returns the images created or updated.
    public func importArchive(
        _ stream: any TransferByteStream, mediaType: String, into store: ImageStoreSpec,
        progress: @escaping ProgressSink
    ) async throws(BerthError) -> [ImageRecord] {
        throw .notImplemented("import is not implemented yet")
    }

    /// Writes the image `store.name` (or every image when empty) as an archive to `stream`.
    public func exportArchive(
        _ store: ImageStoreSpec, to stream: any TransferByteStream, _ spec: ExportSpec, progress: @escaping ProgressSink
    ) async throws(BerthError) {
        throw .notImplemented("export is not implemented yet")
    }
}
