import BerthCore
import BerthSHA256

/// Layer identities as containerd's `identity` package computes them: the chain ID names the snapshot that holds a
/// layer applied on its parents, so Berth and `ctr` agree on snapshot keys.
public enum Identity {
    /// `ChainID(L0) = DiffID(L0)`, `ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln))`; nil for no layers.
    public static func chainID(_ diffIDs: [Digest]) throws(BerthError) -> Digest? {
        try chainIDs(diffIDs).last
    }

    /// The chain ID of every prefix of `diffIDs`.
    public static func chainIDs(_ diffIDs: [Digest]) throws(BerthError) -> [Digest] {
        var result: [Digest] = []
        result.reserveCapacity(diffIDs.count)
        for diffID in diffIDs {
            guard let parent = result.last else {
                result.append(diffID)
                continue
            }
            result.append(try sha256Digest(Array("\(parent) \(diffID)".utf8)))
        }
        return result
    }

    /// `sha256:<hex>` of `bytes`.
    public static func sha256Digest(_ bytes: [UInt8]) throws(BerthError) -> Digest {
        try Digest(algorithm: "sha256", encoded: SHA256Small.hex(bytes))
    }
}
