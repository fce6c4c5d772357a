import BerthCore
import Foundation
import Testing

@Suite struct DigestTests {
    static let hex = String(repeating: "0123456789abcdef", count: 4)

    @Test func parsesAndSplits() throws {
        let digest = try Digest(parsing: "sha256:" + Self.hex)
        #expect(digest.algorithm == "sha256")
        #expect(digest.encoded == Self.hex)
        #expect(digest.description == "sha256:" + Self.hex)
        #expect(try Digest(algorithm: "sha256", encoded: Self.hex) == digest)
        #expect(try Digest(parsing: "sha512:" + Self.hex + Self.hex).algorithm == "sha512")
    }

    @Test(arguments: [
        "", ":" + hex, "sha256", "sha256:", "sha256:" + hex.uppercased(), "sha256:" + hex + "0",
        "sha256:" + String(hex.dropLast()) + "g", "md5:" + hex, "sha256:" + String(hex.dropLast(2)) + "é",
    ])
    func rejects(_ text: String) {
        #expect(throws: BerthError.self) { try Digest(parsing: text) }
        do {
            _ = try Digest(parsing: text)
        } catch {
            #expect(error.code == .invalidArgument)
        }
    }

    @Test func namesAnUnknownAlgorithm() {
        do {
            _ = try Digest(parsing: "md5:abc")
            Issue.record("md5 accepted")
        } catch {
            #expect(error.message.contains("unsupported digest algorithm \"md5\""))
        }
    }

    @Test func hashesAndCodesAsItsText() throws {
        let a = try Digest(parsing: "sha256:" + Self.hex)
        let b = try Digest(algorithm: "sha256", encoded: Self.hex)
        #expect(Set([a, b]).count == 1)
        let data = try JSONEncoder().encode([a])
        #expect(String(decoding: data, as: UTF8.self) == "[\"sha256:\(Self.hex)\"]")
        #expect(try JSONDecoder().decode([Digest].self, from: data) == [a])
        #expect(throws: (any Error).self) { try JSONDecoder().decode([Digest].self, from: Data("[\"sha256:x\"]".utf8)) }
    }
}
