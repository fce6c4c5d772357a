import AsyncHTTPClient
import BerthCore
import BerthOCI
import Foundation
import NIOCore
import NIOHTTP1
import NIOSSL

/// How often and how long to retry requests that failed with a 5xx status or a dropped connection.
public struct RetryPolicy: Sendable {
    public var attempts: Int
    public var initialDelay: Duration
    public init(attempts: Int = 4, initialDelay: Duration = .milliseconds(100)) {
        self.attempts = attempts
        self.initialDelay = initialDelay
    }
    public static let `default` = RetryPolicy()
}

/// An OCI distribution client on AsyncHTTPClient: ping, auth (Basic and Bearer), resolve, fetch and push, over the
/// hosts a `HostsResolver` names for each registry namespace. Clients share one connection pool.
public final class RegistryClient: Sendable {
    public let hostsResolver: HostsResolver
    public let retry: RetryPolicy
    let http: HTTPClient
    let authorizer: Authorizer
    static let userAgent = "berth/0.1"
    /// Manifests larger than this are refused (containerd's limit is 4 MiB).
    public static let maxManifestSize = 4 << 20

    public init(hosts: HostsResolver = HostsResolver(), credentials: CredentialSource = .none, retry: RetryPolicy = .default) {
        self.hostsResolver = hosts
        self.retry = retry
        self.http = Self.sharedHTTP
        self.authorizer = Authorizer(credentials: credentials, http: Self.sharedHTTP)
    }

    /// One connection pool for every client of the process, never shut down, so that a client dropped without
    /// `shutdown()` cannot trip AsyncHTTPClient's deinit assertion.
    static let sharedHTTP: HTTPClient = {
        var configuration = HTTPClient.Configuration()
        configuration.timeout = .init(connect: .seconds(10), read: .seconds(60))
        configuration.redirectConfiguration = .follow(max: 5, allowCycles: false)
        configuration.decompression = .disabled
        // Fail a connection (refused, TLS verification) at once; `RetryPolicy` decides what to retry.
        configuration.connectionPool.retryConnectionEstablishment = false
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }()

    /// Kept for callers that end a client explicitly; the shared pool stays up for other clients.
    public func shutdown() async {}

    /// The hosts for a reference's registry with at least `capability`.
    public func hosts(for domain: String, capability: RegistryHost.Capabilities) throws(BerthError) -> [RegistryHost] {
        let hosts = try hostsResolver.hosts(for: domain).filter { $0.capabilities.isSuperset(of: capability) }
        guard !hosts.isEmpty else { throw .notFound("no host for \(domain) with capability \(capability.rawValue)") }
        return hosts
    }

    /// `GET /v2/`: the API version check. Returns the status after auth (200 when reachable and authorized).
    @discardableResult
    public func ping(_ host: RegistryHost) async throws(BerthError) -> Int {
        let response = try await send(.GET, host: host, path: "/", scopes: [])
        try? await drain(response)
        guard response.status == .ok else {
            throw BerthError(.unknown, "ping \(host.baseURL)/: unexpected status \(response.status)")
        }
        return Int(response.status.code)
    }

    /// The scope to pull from a repository.
    public static func pullScope(_ path: String) -> String { "repository:\(path):pull" }
    /// The scope to push to a repository.
    public static func pushScope(_ path: String) -> String { "repository:\(path):pull,push" }

    // MARK: Sending

    /// Sends one request with auth and retries: 401 is answered from the challenge once; 5xx and connection errors
    /// are retried with exponential backoff. The body, if any, is re-sent on retry.
    func send(
        _ method: HTTPMethod, host: RegistryHost, path: String, url: String? = nil, headers: [(String, String)] = [],
        body: [UInt8]? = nil, scopes: Set<String>, timeout: TimeAmount = .seconds(60)
    ) async throws(BerthError) -> HTTPClientResponse {
        let target = url ?? host.baseURL + path
        var authRetried = false
        var attempt = 0
        while true {
            attempt += 1
            var request = HTTPClientRequest(url: target)
            request.method = method
            request.headers.add(name: "User-Agent", value: Self.userAgent)
            for (name, values) in host.headers { for value in values { request.headers.add(name: name, value: value) } }
            for (name, value) in headers { request.headers.add(name: name, value: value) }
            let authorization = try await authorizer.authorization(host: host.host, scopes: scopes)
            if let authorization { request.headers.replaceOrAdd(name: "Authorization", value: authorization) }
            if let body {
                request.body = .bytes(ByteBuffer(bytes: body))
            } else if method == .PUT || method == .POST || method == .PATCH {
                request.headers.replaceOrAdd(name: "Content-Length", value: "0")
            }
            if host.scheme == "https" { request.tlsConfiguration = try Self.tlsConfiguration(host) }
            let response: HTTPClientResponse
            do {
                response = try await http.execute(request, timeout: timeout)
            } catch {
                if Task.isCancelled { throw BerthError(.canceled, "\(method) \(target): canceled") }
                guard attempt < retry.attempts, Self.isRetryable(error) else {
                    throw BerthError(.unavailable, "\(method) \(target): \(error)")
                }
                try await backoff(attempt)
                continue
            }
            if response.status == .unauthorized, !authRetried {
                authRetried = true
                let header = response.headers["WWW-Authenticate"]
                try? await drain(response)
                if try await authorizer.challenged(
                    host: host.host, header: header, scopes: scopes, hadAuthorization: authorization != nil)
                {
                    attempt -= 1
                    continue
                }
                throw BerthError(.unknown, "\(method) \(target): 401 Unauthorized")
            }
            if response.status.code >= 500, response.status != .notImplemented, attempt < retry.attempts {
                try? await drain(response)
                try await backoff(attempt)
                continue
            }
            return response
        }
    }

    func backoff(_ attempt: Int) async throws(BerthError) {
        let delay = retry.initialDelay * (1 << min(attempt - 1, 6))
        do { try await Task.sleep(for: delay) } catch { throw BerthError(.canceled, "retry canceled") }
    }

    static func isRetryable(_ error: any Error) -> Bool {
        if let error = error as? HTTPClientError {
            return [
                HTTPClientError.remoteConnectionClosed, .connectTimeout, .readTimeout, .deadlineExceeded,
            ].contains(error)
        }
        if error is NIOSSLError { return false }
        // Connection refused/reset and other socket errors from NIO.
        return error is IOError || error is ChannelError || String(describing: error).contains("connect")
    }

    /// TLS for a host: system roots plus its CAs, its client certificates, or no verification when `skip_verify`.
    static func tlsConfiguration(_ host: RegistryHost) throws(BerthError) -> TLSConfiguration {
        var tls = TLSConfiguration.makeClientConfiguration()
        if host.skipVerify { tls.certificateVerification = .none }
        tls.additionalTrustRoots = host.caCertificates.map { .file($0) }
        if let pair = host.clientCertificates.first {
            do {
                let certificates = try NIOSSLCertificate.fromPEMFile(pair[0])
                tls.certificateChain = certificates.map { .certificate($0) }
                let keyFile = pair.count > 1 && !pair[1].isEmpty ? pair[1] : pair[0]
                tls.privateKey = .privateKey(try NIOSSLPrivateKey(file: keyFile, format: .pem))
            } catch {
                throw .invalidArgument("client certificate \(pair): \(error)")
            }
        }
        return tls
    }

    func drain(_ response: HTTPClientResponse) async throws {
        for try await _ in response.body {}
    }

    /// Collects a small body (manifests, errors) up to `limit` bytes.
    func collect(_ response: HTTPClientResponse, limit: Int, what: String) async throws(BerthError) -> [UInt8] {
        do {
            return Array(buffer: try await response.body.collect(upTo: limit))
        } catch {
            throw BerthError(.unknown, "\(what): reading body: \(error)")
        }
    }

    /// A BerthError for an unexpected status, with the registry's `errors` message when it sent one.
    func failure(_ response: HTTPClientResponse, _ what: String) async -> BerthError {
        let body = (try? await collect(response, limit: 64 << 10, what: what)) ?? []
        var detail = ""
        if let object = (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any],
            let errors = object["errors"] as? [[String: Any]]
        {
            detail = ": " + errors.map { "\($0["code"] ?? ""): \($0["message"] ?? "")" }.joined(separator: "; ")
        }
        let code: BerthError.Code = response.status == .notFound ? .notFound : .unknown
        return BerthError(code, "\(what): unexpected status \(response.status.code) \(response.status.reasonPhrase)\(detail)")
    }
}
