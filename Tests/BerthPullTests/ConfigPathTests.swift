import BerthCore
import BerthImage
import BerthTestSupport
import Foundation
import Testing

/// The transfer plugin's `config_path`: the hosts.toml directory used when the client names none.
@Suite(.serialized) struct ConfigPathTests {
    /// `alias.invalid` resolves nowhere; only its hosts.toml under the transferrer's config path leads to the
    /// test registry, so the pull succeeds only if that directory is used.
    @Test func pullUsesTheTransferrersConfigPathWhenTheClientGivesNone() async throws {
        try await PullFixture.with { fixture in
            let layout = try await fixture.push(.oci, name: "test/aliased")
            let hosts = fixture.dir + "/hosts"
            try FileManager.default.createDirectory(atPath: hosts + "/alias.invalid", withIntermediateDirectories: true)
            let toml = """
                server = "http://\(fixture.registry.host)"
                [host."http://\(fixture.registry.host)"]
                  capabilities = ["pull", "resolve", "push"]
                """
            try Data(toml.utf8).write(to: URL(fileURLWithPath: hosts + "/alias.invalid/hosts.toml"))
            let transferrer = LocalTransferrer(stores: try fixture.transferrer.stores, configPath: hosts)
            #expect(transferrer.configPath == hosts)
            let spec = RegistrySpec(reference: "alias.invalid/test/aliased:latest")
            let record = try await inDefault {
                try await transferrer.pull(spec, into: ImageStoreSpec(), progress: { _ in })
            }
            #expect(record.name == "alias.invalid/test/aliased:latest")
            #expect(record.target.digest == layout.descriptor.digest)
        }
    }
}
