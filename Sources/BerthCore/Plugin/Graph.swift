/// Orders registrations for initialisation: a dependency-first walk in registration order (the builtins list's
/// order is the tie-break), as containerd's `Registry.Graph`, but a cycle or an unprovided requirement is an error
/// instead of a panic.
public enum PluginGraph {
    /// Returns the registrations in init order. Disabled URIs are left out of the result, but still count as
    /// providers: a plugin that needs a disabled plugin fails at init time (and is listed as failed), while a
    /// requirement that no compiled-in plugin can ever meet is a startup error.
    public static func order(_ registrations: [Registration], disabled: Set<String> = []) throws(BerthError)
        -> [Registration]
    {
        var seen = Set<String>()
        for r in registrations {
            if r.type.rawValue.isEmpty || r.id.isEmpty {
                throw .invalidArgument("plugin registration with empty type or id: \"\(r.uri)\"")
            }
            if !seen.insert(r.uri).inserted { throw .alreadyExists("plugin \(r.uri) registered twice") }
        }

        var missing: [String] = []
        for r in registrations {
            for req in r.requires {
                switch req {
                case .type(let t) where !registrations.contains(where: { $0.type == t }):
                    missing.append("\(r.uri) requires \(t.rawValue), which no plugin provides")
                case .plugin(let t, let id) where !registrations.contains(where: { $0.type == t && $0.id == id }):
                    missing.append("\(r.uri) requires \(t.rawValue).\(id), which no plugin provides")
                default: break
                }
            }
        }
        if !missing.isEmpty { throw .failedPrecondition("plugin graph: " + missing.joined(separator: "; ")) }

        let active = registrations.filter { !disabled.contains($0.uri) }
        var ordered: [Registration] = []
        var done = Set<String>()
        var stack: [String] = []

        func dependencies(of r: Registration) -> [Registration] {
            var deps: [Registration] = []
            for req in r.requires {
                switch req {
                case .type(let t): deps += active.filter { $0.type == t && $0.uri != r.uri }
                case .plugin(let t, let id): deps += active.filter { $0.type == t && $0.id == id }
                case .all: deps += active.filter { $0.uri != r.uri && !$0.requires.contains(.all) }
                }
            }
            return deps
        }

        func visit(_ r: Registration) throws(BerthError) {
            if done.contains(r.uri) { return }
            if let start = stack.firstIndex(of: r.uri) {
                let cycle = stack[start...] + [r.uri]
                throw .failedPrecondition("plugin graph: dependency cycle: " + cycle.joined(separator: " -> "))
            }
            stack.append(r.uri)
            for dep in dependencies(of: r) { try visit(dep) }
            stack.removeLast()
            done.insert(r.uri)
            ordered.append(r)
        }

        for r in active { try visit(r) }
        return ordered
    }
}
