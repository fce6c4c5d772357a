/// Berth's version, reported by the Version service and `berth version`.
public enum BuildInfo {
    public static let version = "0.1.0"
    /// Set by packagers; empty in a development build.
    public static let revision = ""
    /// The package name shown by `berth version`.
    public static let package = "berth"
}
