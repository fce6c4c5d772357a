import BerthCore

/// `io.containerd.content.v1.content`: the local content store, rooted at `<root>/io.containerd.content.v1.content`
/// with containerd's layout. No configuration.
public let registration = Registration(
    type: .content, id: "content",
    summary: "Content store: blobs by digest under blobs/sha256, resumable ingests under ingest/ (containerd's layout)."
) { ic in
    try LocalContentStore(root: ic.makeRoot())
}
