import Crypto
import Foundation
import Glibc

/// Debian's `docker-registry` (distribution 2.8) on 127.0.0.1 and a free port, in a temp dir with filesystem storage.
/// Modes: plain HTTP, htpasswd Basic auth, TLS from a CA this fixture creates, and token auth served by a small token
/// server the fixture runs (JWTs signed with an ES256 key whose certificate is the registry's `rootcertbundle`).
public final class TestRegistry: @unchecked Sendable {
    public enum Auth: Sendable, Equatable {
        case none
        case basic
        /// Token auth; anonymous clients get pull-only tokens when `anonymousPull`, else 401 from the token server.
        case token(anonymousPull: Bool)
    }

    public struct Mode: Sendable {
        public var tls: Bool
        public var auth: Auth
        /// The registry requires a client certificate signed by its CA (`http.tls.clientcas`); implies `tls`.
        public var clientCertificates: Bool
        public init(tls: Bool = false, auth: Auth = .none, clientCertificates: Bool = false) {
            self.tls = tls || clientCertificates
            self.auth = auth
            self.clientCertificates = clientCertificates
        }
        public static let plain = Mode()
        public static let basic = Mode(auth: .basic)
        public static let tls = Mode(tls: true)
        public static let token = Mode(auth: .token(anonymousPull: true))
        public static let tlsBasic = Mode(tls: true, auth: .basic)
        /// TLS that also requires a client certificate (see `clientCertificatePath`, `clientKeyPath`).
        public static let mutualTLS = Mode(clientCertificates: true)
    }

    public static let username = "berth"
    public static let password = "pw-\u{65}xample-42"
    public static let service = "berth-test-registry"
    public static let issuer = "berth-test-token-issuer"

    public let mode: Mode
    /// The temp directory holding config, certificates, storage and the registry's log.
    public let directory: String
    /// `127.0.0.1:PORT`.
    public let host: String
    public let port: Int
    /// The CA certificate (PEM) that signed the server certificate, when TLS.
    public let caPath: String?
    /// The client certificate (PEM) signed by the CA, when the mode requires client certificates.
    public var clientCertificatePath: String? { mode.clientCertificates ? directory + "/client.cert" : nil }
    /// The client certificate's key (PEM), when the mode requires client certificates.
    public var clientKeyPath: String? { mode.clientCertificates ? directory + "/client.key" : nil }
    /// The client certificate followed by its key in one PEM file (hosts.toml's single-string `client` form).
    public var clientCombinedPath: String? { mode.clientCertificates ? directory + "/client-combined.pem" : nil }
    /// The registry's filesystem storage root (blobs under `docker/registry/v2/blobs/sha256/xx/<hex>/data`).
    public let storageDirectory: String
    /// The token server, when token auth.
    public let tokenServer: TokenServer?
    let process: TestProcess

    /// `http://host` or `https://host`.
    public var baseURL: String { (mode.tls ? "https://" : "http://") + host }

    /// The registry's on-disk file for a blob.
    public func blobDataPath(_ digest: String) -> String {
        let hex = digest.split(separator: ":").last.map(String.init) ?? digest
        return "\(storageDirectory)/docker/registry/v2/blobs/sha256/\(hex.prefix(2))/\(hex)/data"
    }

    private init(
        mode: Mode, directory: String, port: Int, caPath: String?, tokenServer: TokenServer?, process: TestProcess
    ) {
        self.mode = mode
        self.directory = directory
        self.port = port
        self.host = "127.0.0.1:\(port)"
        self.caPath = caPath
        self.storageDirectory = directory + "/data"
        self.tokenServer = tokenServer
        self.process = process
    }

    /// Starts a registry in `mode` and waits until it accepts connections.
    public static func start(_ mode: Mode = .plain) async throws -> TestRegistry {
        let directory = "/tmp/berth-registry-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory + "/data", withIntermediateDirectories: true)
        var tokenServer: TokenServer?
        do {
            // Everything after `http.addr` (TLS sits under `http`, then auth); the port is chosen per attempt.
            var tail = ""
            var caPath: String?
            if mode.tls {
                caPath = try await makeServerCertificate(in: directory)
                tail += "  tls:\n    certificate: \(directory)/server.crt\n    key: \(directory)/server.key\n"
                if mode.clientCertificates {
                    try await makeClientCertificate(in: directory)
                    tail += "    clientcas:\n      - \(directory)/ca.crt\n"
                }
            }
            switch mode.auth {
            case .none:
                break
            case .basic:
                let line = try await TestCommand.check("/usr/bin/htpasswd", ["-Bbn", username, password])
                try Data(line.utf8).write(to: URL(fileURLWithPath: directory + "/htpasswd"))
                tail += "auth:\n  htpasswd:\n    realm: berth-basic\n    path: \(directory)/htpasswd\n"
            case .token(let anonymousPull):
                let server = try await TokenServer.start(directory: directory, anonymousPull: anonymousPull)
                tokenServer = server
                tail += """
                    auth:
                      token:
                        realm: http://127.0.0.1:\(server.port)/token
                        service: \(service)
                        issuer: \(issuer)
                        rootcertbundle: \(server.certificatePath)

                    """
            }
            // The free port can be taken by anything else on the host before the registry binds it (an outgoing
            // connection's ephemeral port, say): then the registry exits with "address already in use" and
            // another port is tried.
            for attempt in 1...3 {
                let port = try freePort()
                let config = """
                    version: 0.1
                    log:
                      level: warn
                      accesslog:
                        disabled: true
                    storage:
                      filesystem:
                        rootdirectory: \(directory)/data
                      delete:
                        enabled: true
                    http:
                      addr: 127.0.0.1:\(port)
                      secret: berth-test-secret

                    """ + tail
                try Data(config.utf8).write(to: URL(fileURLWithPath: directory + "/config.yml"))
                let process = try TestProcess(
                    "/usr/bin/docker-registry", ["serve", directory + "/config.yml"],
                    outputPath: directory + "/registry.log")
                do {
                    try await waitForPort(port, process: process)
                } catch {
                    let output = (try? String(contentsOfFile: directory + "/registry.log", encoding: .utf8)) ?? ""
                    if process.isRunning {
                        kill(process.processIdentifier, SIGKILL)
                        process.waitUntilExit()
                    }
                    if output.contains("address already in use") && attempt < 3 { continue }
                    throw TestRegistryError("registry did not start: \(error): \(output)")
                }
                return TestRegistry(
                    mode: mode, directory: directory, port: port, caPath: caPath, tokenServer: tokenServer,
                    process: process)
            }
            throw TestRegistryError("registry did not start")
        } catch {
            tokenServer?.stop()
            try? FileManager.default.removeItem(atPath: directory)
            throw error
        }
    }

    /// Kills the registry (and token server) and removes its directory.
    public func stop() {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        tokenServer?.stop()
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// The registry's log so far (for failure messages).
    public var log: String { (try? String(contentsOfFile: directory + "/registry.log", encoding: .utf8)) ?? "" }

    /// A free TCP port on 127.0.0.1 (bound to 0, read back, released).
    public static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestRegistryError("socket: errno \(errno)") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
                bind(fd, pointer, length) == 0 && getsockname(fd, pointer, &length) == 0
            }
        }
        guard bound else { throw TestRegistryError("bind: errno \(errno)") }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    /// Polls until something accepts TCP connections on 127.0.0.1:`port` (30 s at most).
    static func waitForPort(_ port: Int, process: TestProcess) async throws {
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            guard process.isRunning else { throw TestRegistryError("exited with \(process.terminationStatus)") }
            if canConnect(port) { return }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw TestRegistryError("no listener on port \(port) after 30 s")
    }

    static func canConnect(_ port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = UInt16(port).bigEndian
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
    }

    /// Creates `ca.crt` and a `server.crt`/`server.key` for 127.0.0.1 and localhost signed by it; returns the CA path.
    static func makeServerCertificate(in directory: String) async throws -> String {
        let openssl = "/usr/bin/openssl"
        try await TestCommand.check(
            openssl,
            [
                "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-keyout", directory + "/ca.key", "-out", directory + "/ca.crt", "-days", "2", "-subj", "/CN=Berth Test CA",
                "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            ])
        try await TestCommand.check(
            openssl,
            [
                "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-keyout", directory + "/server.key", "-out", directory + "/server.csr", "-subj", "/CN=127.0.0.1",
            ])
        let extensions = """
            basicConstraints=CA:FALSE
            keyUsage=critical,digitalSignature,keyEncipherment
            extendedKeyUsage=serverAuth
            subjectAltName=IP:127.0.0.1,DNS:localhost

            """
        try Data(extensions.utf8).write(to: URL(fileURLWithPath: directory + "/server.ext"))
        try await TestCommand.check(
            openssl,
            [
                "x509", "-req", "-in", directory + "/server.csr", "-CA", directory + "/ca.crt", "-CAkey", directory + "/ca.key",
                "-CAcreateserial", "-out", directory + "/server.crt", "-days", "2", "-extfile", directory + "/server.ext",
            ])
        return directory + "/ca.crt"
    }

    /// Creates `client.cert`/`client.key` (clientAuth) signed by the CA in `directory`, `client-combined.pem` (both
    /// in one file), and `skopeo-certs/` holding the CA and the pair, the cert dir `TestImageLayout.push` gives skopeo.
    static func makeClientCertificate(in directory: String) async throws {
        let openssl = "/usr/bin/openssl"
        try await TestCommand.check(
            openssl,
            [
                "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-keyout", directory + "/client.key", "-out", directory + "/client.csr", "-subj", "/CN=berth-test-client",
            ])
        let extensions = "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n"
        try Data(extensions.utf8).write(to: URL(fileURLWithPath: directory + "/client.ext"))
        try await TestCommand.check(
            openssl,
            [
                "x509", "-req", "-in", directory + "/client.csr", "-CA", directory + "/ca.crt", "-CAkey", directory + "/ca.key",
                "-CAcreateserial", "-out", directory + "/client.cert", "-days", "2", "-extfile", directory + "/client.ext",
            ])
        let certificate = try Data(contentsOf: URL(fileURLWithPath: directory + "/client.cert"))
        let key = try Data(contentsOf: URL(fileURLWithPath: directory + "/client.key"))
        try (certificate + key).write(to: URL(fileURLWithPath: directory + "/client-combined.pem"))
        let certDir = directory + "/skopeo-certs"
        try FileManager.default.createDirectory(atPath: certDir, withIntermediateDirectories: true)
        for (from, to) in [("ca.crt", "ca.crt"), ("client.cert", "client.cert"), ("client.key", "client.key")] {
            try FileManager.default.copyItem(atPath: directory + "/" + from, toPath: certDir + "/" + to)
        }
    }
}

public struct TestRegistryError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// A minimal Docker token server (`GET /token?service=…&scope=…` with optional Basic auth, and the OAuth2
/// `POST /token` password grant containerd tries first). Each connection is served on its own thread.
public final class TokenServer: @unchecked Sendable {
    public let port: Int
    /// PEM certificate of the signing key (the registry's `rootcertbundle`).
    public let certificatePath: String
    let anonymousPull: Bool
    let key: P256.Signing.PrivateKey
    let certificateDER: Data
    let listener: Int32
    let lock = NSLock()
    var stopped = false
    var recorded: [String] = []

    /// Each request as `METHOD user scope scope…` (user `-` when anonymous), for tests to check scopes.
    public var requests: [String] { lock.withLock { recorded } }

    init(port: Int, certificatePath: String, anonymousPull: Bool, key: P256.Signing.PrivateKey, certificateDER: Data, listener: Int32) {
        self.port = port
        self.certificatePath = certificatePath
        self.anonymousPull = anonymousPull
        self.key = key
        self.certificateDER = certificateDER
        self.listener = listener
    }

    static func start(directory: String, anonymousPull: Bool) async throws -> TokenServer {
        let keyPath = directory + "/token.key"
        let certificatePath = directory + "/token.crt"
        try await TestCommand.check(
            "/usr/bin/openssl",
            [
                "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", keyPath,
                "-out", certificatePath, "-days", "2", "-subj", "/CN=berth-token-signer",
            ])
        try await TestCommand.check("/usr/bin/openssl", ["x509", "-in", certificatePath, "-outform", "DER", "-out", directory + "/token.der"])
        let key = try P256.Signing.PrivateKey(pemRepresentation: try String(contentsOfFile: keyPath, encoding: .utf8))
        let der = try Data(contentsOf: URL(fileURLWithPath: directory + "/token.der"))

        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestRegistryError("socket: errno \(errno)") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
                bind(fd, pointer, length) == 0 && getsockname(fd, pointer, &length) == 0 && listen(fd, 64) == 0
            }
        }
        guard ok else {
            close(fd)
            throw TestRegistryError("token server bind/listen: errno \(errno)")
        }
        let server = TokenServer(
            port: Int(UInt16(bigEndian: address.sin_port)), certificatePath: certificatePath, anonymousPull: anonymousPull,
            key: key, certificateDER: der, listener: fd)
        let thread = Thread { server.acceptLoop() }
        thread.start()
        return server
    }

    func stop() {
        let wasStopped = lock.withLock {
            defer { stopped = true }
            return stopped
        }
        guard !wasStopped else { return }
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
    }

    func acceptLoop() {
        while true {
            let client = accept(listener, nil, nil)
            if client < 0 {
                if errno == EINTR { continue }
                return
            }
            let thread = Thread { self.serve(client) }
            thread.start()
        }
    }

    func serve(_ fd: Int32) {
        defer { close(fd) }
        var data = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 8192)
        var headerEnd: Int?
        while headerEnd == nil {
            let count = read(fd, &buffer, buffer.count)
            if count <= 0 { return }
            data += buffer[0..<count]
            headerEnd = Self.find([13, 10, 13, 10], in: data)
        }
        guard let headerEnd else { return }
        let head = String(decoding: data[0..<headerEnd], as: UTF8.self)
        var lines = head.components(separatedBy: "\r\n")
        let requestLine = lines.removeFirst().split(separator: " ").map(String.init)
        var headers: [String: String] = [:]
        for line in lines {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        var body = Array(data[(headerEnd + 4)...])
        let contentLength = Int(headers["content-length"] ?? "0") ?? 0
        while body.count < contentLength {
            let count = read(fd, &buffer, buffer.count)
            if count <= 0 { break }
            body += buffer[0..<count]
        }
        guard requestLine.count >= 2 else { return }
        let method = requestLine[0]
        let target = requestLine[1]
        let path = target.split(separator: "?", maxSplits: 1).first.map(String.init) ?? target
        var parameters = Self.formPairs(target.contains("?") ? String(target.split(separator: "?", maxSplits: 1)[1]) : "")
        if method == "POST" { parameters += Self.formPairs(String(decoding: body, as: UTF8.self)) }
        let (status, json) = respond(method: method, path: path, parameters: parameters, authorization: headers["authorization"])
        let payload = Array(json.utf8)
        let reason = status == 200 ? "OK" : status == 401 ? "Unauthorized" : status == 404 ? "Not Found" : "Bad Request"
        let response = "HTTP/1.1 \(status) \(reason)\r\nContent-Type: application/json\r\nContent-Length: \(payload.count)\r\nConnection: close\r\n\r\n"
        let bytes = Array(response.utf8) + payload
        var written = 0
        while written < bytes.count {
            let count = bytes[written...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if count <= 0 { return }
            written += count
        }
    }

    /// Decides one token request: 401 for wrong credentials (or anonymous when anonymous pulls are off).
    func respond(method: String, path: String, parameters: [(String, String)], authorization: String?) -> (Int, String) {
        guard path == "/token" else { return (404, #"{"error":"not found"}"#) }
        var user: String?
        var password: String?
        if method == "POST" {
            user = parameters.first { $0.0 == "username" }?.1
            password = parameters.first { $0.0 == "password" }?.1
        } else if let authorization, authorization.lowercased().hasPrefix("basic "),
            let decoded = Data(base64Encoded: String(authorization.dropFirst(6))).map({ String(decoding: $0, as: UTF8.self) }),
            let colon = decoded.firstIndex(of: ":")
        {
            user = String(decoded[..<colon])
            password = String(decoded[decoded.index(after: colon)...])
        }
        let scopes = parameters.filter { $0.0 == "scope" }.flatMap { $0.1.split(separator: " ").map(String.init) }
        lock.withLock { recorded.append(([method, user ?? "-"] + scopes).joined(separator: " ")) }
        let authenticated = user == TestRegistry.username && password == TestRegistry.password
        if user != nil && !authenticated { return (401, #"{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}"#) }
        if user == nil && !anonymousPull { return (401, #"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#) }
        var access: [[String: Any]] = []
        for scope in scopes {
            let parts = scope.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
            guard parts.count >= 3 else { continue }
            let actions = parts[parts.count - 1].split(separator: ",").map(String.init)
            let granted = authenticated ? actions : actions.filter { $0 == "pull" }
            access.append(["type": parts[0], "name": parts[1..<(parts.count - 1)].joined(separator: ":"), "actions": granted])
        }
        guard let token = try? makeToken(subject: authenticated ? (user ?? "") : "", access: access) else {
            return (500, #"{"error":"signing failed"}"#)
        }
        let issued = ISO8601DateFormatter().string(from: Date())
        return (200, #"{"token":"\#(token)","access_token":"\#(token)","expires_in":300,"issued_at":"\#(issued)"}"#)
    }

    /// A JWT (ES256, `x5c` carrying the signing certificate) with distribution's claims.
    func makeToken(subject: String, access: [[String: Any]]) throws -> String {
        let now = Int(Date().timeIntervalSince1970)
        let header: [String: Any] = ["typ": "JWT", "alg": "ES256", "x5c": [certificateDER.base64EncodedString()]]
        let claims: [String: Any] = [
            "iss": TestRegistry.issuer, "sub": subject, "aud": TestRegistry.service, "exp": now + 300, "nbf": now - 10,
            "iat": now, "jti": UUID().uuidString, "access": access,
        ]
        let signingInput = Self.base64URL(try JSONSerialization.data(withJSONObject: header))
            + "." + Self.base64URL(try JSONSerialization.data(withJSONObject: claims))
        let signature = try key.signature(for: Data(signingInput.utf8))
        return signingInput + "." + Self.base64URL(signature.rawRepresentation)
    }

    static func base64URL(_ data: Data) -> String {
        data.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    static func formPairs(_ text: String) -> [(String, String)] {
        text.split(separator: "&").map { pair in
            let parts = pair.split(separator: "=", maxSplits: 1).map {
                $0.replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? String($0)
            }
            return (parts.first ?? "", parts.count > 1 ? parts[1] : "")
        }
    }

    static func find(_ needle: [UInt8], in haystack: [UInt8]) -> Int? {
        guard haystack.count >= needle.count else { return nil }
        for start in 0...(haystack.count - needle.count) where haystack[start..<(start + needle.count)].elementsEqual(needle) {
            return start
        }
        return nil
    }
}
