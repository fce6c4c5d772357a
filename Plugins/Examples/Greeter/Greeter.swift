import BerthCore

/// The example plugin of docs/plugins.md: a config section with defaults, exports, a capability, a skip, and a
/// requirement on another plugin reached through a BerthCore protocol, never through its module.
public struct GreeterConfig: PluginConfig, Equatable {
    /// What `greet` says before a name, unless the namespace has a `greeting` label.
    public var greeting: String = "Hello"
    /// Whether the plugin loads at all; `false` shows how a plugin reports itself skipped.
    public var enabled: Bool = true

    public init() {}
}

/// What other plugins would look up with `ic.instance(.internal, id: "greeter", as: Greeter.self)`.
public struct Greeter: Sendable {
    public let greeting: String
    let namespaces: any NamespaceStore

    /// Greets `name`, in the words of the namespace's `greeting` label when it has one.
    public func greet(_ name: String, namespace: String) async throws(BerthError) -> String {
        let labels = try await namespaces.labels(namespace)
        return "\(labels["greeting"] ?? greeting), \(name)!"
    }
}

public let registration = Registration(
    type: .internal, id: "greeter", requires: [.type(.metadata)],
    summary: "Example plugin (docs/plugins.md): greets in the words of its config or a namespace label.",
    config: GreeterConfig.self
) { ic, config in
    guard config.enabled else { throw PluginSkip("greeter disabled by its config (enabled = false)") }
    let namespaces = try ic.single(.metadata, as: (any MetadataProvider).self).namespaces
    ic.export("greeting", config.greeting)
    ic.addCapability("greet")
    return Greeter(greeting: config.greeting, namespaces: namespaces)
}
