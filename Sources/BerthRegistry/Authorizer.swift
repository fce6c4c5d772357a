import AsyncHTTPClient
import BerthCore
import Foundation
import NIOCore
import NIOHTTP1

/// One `WWW-Authenticate` challenge: `Basic realm="…"` or `Bearer realm="…",service="…",scope="…"`.
public struct AuthChallenge: Sendable, Equatable {
    public var scheme: String
    public var parameters: [String: String]

    public init(scheme: String, parameters: [String: String]) {
        self.scheme = scheme
        self.parameters = parameters
    }

    /// Parses a header value that may hold several challenges.
    public static func parse(_ header: String) -> [AuthChallenge] {
        var challenges: [AuthChallenge] = []
        var index = header.startIndex
        func skipSpaces() { while index < header.endIndex, header[index] == " " || header[index] == "," { index = header.index(after: index) } }
        func token() -> String {
            let start = index
            while index < header.endIndex, !" =,\"".contains(header[index]) { index = header.index(after: index) }
            return String(header[start..<index])
        }
        while index < header.endIndex {
            skipSpaces()
            let scheme = token()
            guard !scheme.isEmpty else { break }
            var challenge = AuthChallenge(scheme: scheme.lowercased(), parameters: [:])
            while true {
                skipSpaces()
                let save = index
                let key = token()
                guard !key.isEmpty, index < header.endIndex, header[index] == "=" else {
                    index = save
                    break
                }
                index = header.index(after: index)
                var value = ""
                if index < header.endIndex, header[index] == "\"" {
                    index = header.index(after: index)
                    while index < header.endIndex, header[index] != "\"" {
                        if header[index] == "\\" { index = header.index(after: index) }
                        if index < header.endIndex { value.append(header[index]) ; index = header.index(after: index) }
                    }
                    if index < header.endIndex { index = header.index(after: index) }
                } else {
                    value = token()
                }
                challenge.parameters[key.lowercased()] = value
            }
            challenges.append(challenge)
        }
        return challenges
    }
}

/// Answers registry auth challenges as containerd's docker authorizer: Basic with the host's credentials, or Bearer
/// tokens fetched from the challenge's realm (OAuth2 POST with credentials, falling back to GET; anonymous GET
/// without), cached per host and scope set until they expire.
actor Authorizer {
    let credentials: CredentialSource
    let http: HTTPClient
    var challenges: [String: AuthChallenge] = [:]
    var tokens: [String: (token: String, expires: Date)] = [:]

    /// Credentials already looked up, per host: a callback source (a client's auth stream) is asked once per host.
    var known: [String: Credentials?] = [:]

    init(credentials: CredentialSource, http: HTTPClient) {
        self.credentials = credentials
        self.http = http
    }

    func lookupCredentials(_ host: String) async throws(BerthError) -> Credentials? {
        if let cached = known[host] { return cached }
        let found = try await credentials.credentials(for: host)
        known[host] = .some(found)
        return found
    }

    /// The `Authorization` header for a request to `host` needing `scopes`, nil before any challenge.
    func authorization(host: String, scopes: Set<String>) async throws(BerthError) -> String? {
        guard let challenge = challenges[host] else { return nil }
        switch challenge.scheme {
        case "basic":
            guard let creds = try await lookupCredentials(host) else { return nil }
            return "Basic " + Data("\(creds.username):\(creds.secret)".utf8).base64EncodedString()
        case "bearer":
            var wanted = scopes
            if let scope = challenge.parameters["scope"], !scope.isEmpty {
                wanted.formUnion(scope.split(separator: " ").map(String.init))
            }
            let key = host + " " + wanted.sorted().joined(separator: " ")
            if let cached = tokens[key], cached.expires > Date() { return "Bearer " + cached.token }
            let (token, lifetime) = try await fetchToken(host: host, challenge: challenge, scopes: wanted.sorted())
            tokens[key] = (token, Date().addingTimeInterval(max(lifetime - 10, 1)))
            return "Bearer " + token
        default:
            return nil
        }
    }

    /// Records the challenges of a 401 response; false when nothing new can be tried (same challenge answered already
    /// with the same scopes, or no supported scheme).
    func challenged(host: String, header: [String], scopes: Set<String>, hadAuthorization: Bool) async throws(BerthError)
        -> Bool
    {
        let parsed = header.flatMap(AuthChallenge.parse)
        guard let chosen = parsed.first(where: { $0.scheme == "bearer" }) ?? parsed.first(where: { $0.scheme == "basic" }) else {
            return false
        }
        if chosen.scheme == "basic", try await lookupCredentials(host) == nil { return false }
        let previous = challenges[host]
        challenges[host] = chosen
        if hadAuthorization {
            // A token for these scopes was refused: drop it; retry only if the challenge asks for something new.
            tokens = tokens.filter { !$0.key.hasPrefix(host + " ") }
            return previous != chosen && chosen.scheme == "bearer"
        }
        return true
    }

    func fetchToken(host: String, challenge: AuthChallenge, scopes: [String]) async throws(BerthError) -> (String, TimeInterval) {
        guard let realm = challenge.parameters["realm"], var components = URLComponents(string: realm) else {
            throw BerthError(.unknown, "\(host): bearer challenge without a realm")
        }
        let service = challenge.parameters["service"] ?? ""
        let creds = try await lookupCredentials(host)
        if let creds, !creds.secret.isEmpty {
            var form = URLComponents()
            form.queryItems = [
                URLQueryItem(name: "scope", value: scopes.joined(separator: " ")),
                URLQueryItem(name: "service", value: service),
                URLQueryItem(name: "client_id", value: "berth"),
                URLQueryItem(name: "access_type", value: "online"),
            ] + (creds.username.isEmpty
                ? [URLQueryItem(name: "grant_type", value: "refresh_token"), URLQueryItem(name: "refresh_token", value: creds.secret)]
                : [URLQueryItem(name: "grant_type", value: "password"), URLQueryItem(name: "username", value: creds.username),
                   URLQueryItem(name: "password", value: creds.secret)])
            var request = HTTPClientRequest(url: realm)
            request.method = .POST
            request.headers.add(name: "Content-Type", value: "application/x-www-form-urlencoded; charset=utf-8")
            let body = (form.percentEncodedQuery ?? "").replacingOccurrences(of: "+", with: "%2B")
            request.body = .bytes(ByteBuffer(string: body))
            let (status, data) = try await send(request, what: "fetch oauth token")
            if status == 200 { return try parseToken(data, host: host) }
            if status != 404 && status != 405 {
                throw BerthError(.unknown, "\(host): failed to fetch oauth token: unexpected status \(status)")
            }
        }
        components.queryItems = (components.queryItems ?? []) + [URLQueryItem(name: "service", value: service)]
            + scopes.map { URLQueryItem(name: "scope", value: $0) }
        guard let url = components.url?.absoluteString else { throw BerthError(.unknown, "\(host): bad realm \(realm)") }
        var request = HTTPClientRequest(url: url)
        if let creds, !creds.username.isEmpty {
            request.headers.add(
                name: "Authorization", value: "Basic " + Data("\(creds.username):\(creds.secret)".utf8).base64EncodedString())
        }
        let (status, data) = try await send(request, what: "fetch anonymous token")
        guard status == 200 else {
            throw BerthError(.unknown, "\(host): failed to fetch token: unexpected status \(status) \(HTTPResponseStatus(statusCode: status).reasonPhrase)")
        }
        return try parseToken(data, host: host)
    }

    func send(_ request: HTTPClientRequest, what: String) async throws(BerthError) -> (Int, [UInt8]) {
        do {
            let response = try await http.execute(request, timeout: .seconds(30))
            let body = try await response.body.collect(upTo: 1 << 20)
            return (Int(response.status.code), Array(buffer: body))
        } catch {
            throw BerthError(.unavailable, "\(what) from \(request.url): \(error)")
        }
    }

    func parseToken(_ data: [UInt8], host: String) throws(BerthError) -> (String, TimeInterval) {
        guard let object = (try? JSONSerialization.jsonObject(with: Data(data))) as? [String: Any],
            let token = (object["access_token"] as? String).flatMap({ $0.isEmpty ? nil : $0 }) ?? object["token"] as? String
        else { throw BerthError(.unknown, "\(host): token response without a token") }
        let lifetime = (object["expires_in"] as? NSNumber)?.doubleValue ?? 60
        return (token, lifetime < 60 ? 60 : lifetime)
    }
}
