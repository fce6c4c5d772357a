/// The namespace store the metadata plugin provides (containerd's `namespaces.Store`).
public protocol NamespaceStore: Sendable {
    /// Creates a namespace; AlreadyExists if it exists, InvalidArgument for a bad name or label.
    func create(_ name: String, labels: [String: String]) async throws(BerthError)
    /// A namespace's labels. As in containerd, an unknown namespace has no labels rather than NotFound, because
    /// clients read `containerd.io/defaults/*` labels of namespaces that were never created explicitly.
    func labels(_ name: String) async throws(BerthError) -> [String: String]
    /// Whether the namespace exists.
    func exists(_ name: String) async throws(BerthError) -> Bool
    /// Applies `labels` under `paths` (`labels` replaces all, `labels.KEY` sets or removes one key); creates the
    /// namespace if needed, as containerd's SetLabel does. Returns the labels after the update.
    func update(_ name: String, labels: [String: String], paths: [String]) async throws(BerthError) -> [String: String]
    /// All namespace names, sorted.
    func list() async throws(BerthError) -> [String]
    /// Deletes an empty namespace: NotFound if absent, FailedPrecondition naming what it still holds otherwise.
    func delete(_ name: String) async throws(BerthError)
    /// Lets a plugin that keeps objects per namespace veto deletion: the check returns what it still holds
    /// (e.g. "containers"), or nil when the namespace is empty for it.
    func addDeletionCheck(_ check: @escaping @Sendable (String) async throws(BerthError) -> String?) async
}
