/// Unbuffered writes to stdout/stderr that never trap (Foundation's FileHandle.write traps on EPIPE).
public enum Console {
    public static func out(_ text: String) { _ = FileSystem.writeAll(1, Array(text.utf8)) }
    public static func err(_ text: String) { _ = FileSystem.writeAll(2, Array(text.utf8)) }
}
