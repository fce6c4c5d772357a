import BerthCore
import Foundation

/// A username and secret for a registry; an empty username with a secret is an identity (refresh) token.
public struct Credentials: Sendable, Equatable {
    public var username: String
    public var secret: String

    public init(username: String, secret: String) {
        self.username = username
        self.secret = secret
    }

    /// Parses the CLI's `--user user[:password]` (containerd's `ctr --user`).
    public static func parse(user: String) -> Credentials {
        guard let colon = user.firstIndex(of: ":") else { return Credentials(username: user, secret: "") }
        return Credentials(username: String(user[..<colon]), secret: String(user[user.index(after: colon)...]))
    }

    /// Reads Docker's `config.json` `auths` for `host` (`auth` base64 `user:pass`, or `username`/`password`, or
    /// `identitytoken`); Docker Hub is stored as `https://index.docker.io/v1/`. Nil when the file has no entry.
    public static func fromDockerConfig(path: String, host: String) throws(BerthError) -> Credentials? {
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        guard let root = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw .invalidArgument("\(path): not a JSON object")
        }
        let auths = root["auths"] as? [String: Any] ?? [:]
        let keys = host == "docker.io" || host == "registry-1.docker.io"
            ? ["https://index.docker.io/v1/", "index.docker.io", "docker.io", "registry-1.docker.io"]
            : [host, "https://\(host)", "http://\(host)", "https://\(host)/v1/", "https://\(host)/v2/"]
        guard let entry = keys.lazy.compactMap({ auths[$0] as? [String: Any] }).first else { return nil }
        if let token = entry["identitytoken"] as? String, !token.isEmpty {
            return Credentials(username: "", secret: token)
        }
        if let auth = entry["auth"] as? String, !auth.isEmpty {
            guard let decoded = Data(base64Encoded: auth).map({ String(decoding: $0, as: UTF8.self) }),
                let colon = decoded.firstIndex(of: ":")
            else { throw .invalidArgument("\(path): invalid auth for \(host)") }
            return Credentials(username: String(decoded[..<colon]), secret: String(decoded[decoded.index(after: colon)...]))
        }
        if let username = entry["username"] as? String, let password = entry["password"] as? String {
            return Credentials(username: username, secret: password)
        }
        return nil
    }
}

/// Where a client gets credentials for a host.
public enum CredentialSource: Sendable {
    case none
    /// The same credentials for every host (the CLI's `--user`).
    case fixed(Credentials)
    /// A Docker `config.json`.
    case dockerConfig(path: String)
    /// Asked for each host when a registry challenges (the daemon's transfer service forwards this to the client's
    /// auth stream); nil means anonymous.
    case callback(@Sendable (_ host: String) async throws -> Credentials?)

    func credentials(for host: String) async throws(BerthError) -> Credentials? {
        switch self {
        case .none: return nil
        case .fixed(let credentials): return credentials
        case .dockerConfig(let path): return try Credentials.fromDockerConfig(path: path, host: host)
        case .callback(let lookup):
            do {
                return try await lookup(host)
            } catch {
                throw BerthError.wrap(error)
            }
        }
    }
}
