/// Per-request values that containerd carries in its context: the namespace (gRPC header `containerd-namespace`)
/// and the lease (`containerd-lease`). The gRPC edge binds them as task-locals around each handler.
public enum RequestContext {
    @TaskLocal public static var namespace: String?
    @TaskLocal public static var lease: String?

    /// The request's namespace; containerd answers FailedPrecondition "namespace is required" when it is absent.
    public static func requireNamespace() throws(BerthError) -> String {
        guard let namespace, !namespace.isEmpty else { throw .failedPrecondition("namespace is required") }
        try Identifiers.validate(namespace)
        return namespace
    }
}
