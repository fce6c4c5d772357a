import BerthCore
import BerthOCI
import BerthRegistry
import BerthTestSupport
import Foundation
import Testing

/// hosts.toml's `client` key (TLS client certificates) against a docker-registry that requires them
/// (`http.tls.clientcas`), with the image pushed there by skopeo using the same certificate.
@Suite(.serialized) struct MutualTLSTests {
    /// Writes `<configPath>/<host>/hosts.toml` with `server`, `ca` and, when given, `client` (a TOML value).
    static func writeHosts(_ setup: RegistryClientTests.Setup, name: String, client: String?) throws -> String {
        let configPath = setup.dir + "/" + name
        let hostDir = configPath + "/" + setup.registry.host
        try FileManager.default.createDirectory(atPath: hostDir, withIntermediateDirectories: true)
        var text = "server = \"https://\(setup.registry.host)\"\n"
        text += "[host.\"https://\(setup.registry.host)\"]\n  ca = \"\(setup.registry.caPath ?? "")\"\n"
        if let client { text += "  client = \(client)\n" }
        try Data(text.utf8).write(to: URL(fileURLWithPath: hostDir + "/hosts.toml"))
        return configPath
    }

    @Test func clientCertificateFromHostsTomlPingsResolvesPullsAndPushes() async throws {
        let setup = try await RegistryClientTests.setup(.mutualTLS)
        defer { setup.cleanup() }
        let certificate = try #require(setup.registry.clientCertificatePath)
        let key = try #require(setup.registry.clientKeyPath)
        let reference = "\(setup.registry.host)/test/busybox:latest"

        // The [[cert, key]] form.
        let pairPath = try Self.writeHosts(setup, name: "pair.d", client: "[[\"\(certificate)\", \"\(key)\"]]")
        let resolver = HostsResolver(configPath: pairPath)
        #expect(try resolver.hosts(for: setup.registry.host)[0].clientCertificates == [[certificate, key]])
        let client = RegistryClient(hosts: resolver)
        let host = try client.hosts(for: setup.registry.host, capability: .pull)[0]
        #expect(try await client.ping(host) == 200)
        try await RegistryClientTests.pullAndCheck(client, setup, reference: reference)
        // Pushing over the same mutual TLS, then reading the copy back.
        let copy = try Reference.parseDocker("\(setup.registry.host)/mtls/copy:v1")
        try await RegistryClientTests.pushLayout(client, setup.layout, to: copy)
        try await RegistryClientTests.pullAndCheck(client, setup, reference: copy.description)

        // The single-string form: certificate and key in one PEM file, relative to the hosts dir.
        let combined = try #require(setup.registry.clientCombinedPath)
        let stringPath = setup.dir + "/string.d"
        try FileManager.default.createDirectory(atPath: stringPath + "/" + setup.registry.host, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: combined, toPath: stringPath + "/" + setup.registry.host + "/client.pem")
        _ = try Self.writeHosts(setup, name: "string.d", client: "\"client.pem\"")
        let stringResolver = HostsResolver(configPath: stringPath)
        #expect(
            try stringResolver.hosts(for: setup.registry.host)[0].clientCertificates
                == [[stringPath + "/" + setup.registry.host + "/client.pem", ""]])
        let single = RegistryClient(hosts: stringResolver)
        try await RegistryClientTests.pullAndCheck(single, setup, reference: reference)
    }

    @Test func withoutClientCertificateTheHandshakeFailsClearly() async throws {
        let setup = try await RegistryClientTests.setup(.mutualTLS)
        defer { setup.cleanup() }
        let reference = try Reference.parseDocker("\(setup.registry.host)/test/busybox:latest")
        let configPath = try Self.writeHosts(setup, name: "noclient.d", client: nil)
        // The default retry policy: a rejected certificate must not be retried into a long wait or a hang.
        let client = RegistryClient(hosts: HostsResolver(configPath: configPath))
        let host = try client.hosts(for: setup.registry.host, capability: .pull)[0]
        for attempt in 0..<2 {
            do {
                if attempt == 0 { try await client.ping(host) } else { _ = try await client.resolve(reference) }
                Issue.record("request without a client certificate succeeded")
            } catch {
                #expect(error.code == .unavailable)
                // TLS 1.3: the client's handshake completes before the server checks for a certificate, so the
                // server's certificate_required alert may surface as the TLS error or as the connection it closed.
                let text = error.description.lowercased()
                #expect(
                    text.contains("ssl") || text.contains("certificate") || text.contains("remoteconnectionclosed"),
                    "\(error)")
                #expect(text.contains("https://\(setup.registry.host)/v2/"))
            }
        }
    }
}
