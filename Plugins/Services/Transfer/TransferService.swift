import BerthAPI
import BerthCore
import BerthGRPC
import BerthImage
import BerthOCI
import BerthRegistry
import GRPCCore
import SwiftProtobuf

/// `io.containerd.grpc.v1.transfer`: `containerd.services.transfer.v1.Transfer/Transfer`. Decodes the source and
/// destination Anys into transfer ends, opens the client's named streams (progress, credentials, archive bytes)
/// and runs the local transferrer; the streams are closed when the transfer ends.
public let registration = Registration(
    type: .grpc, id: "transfer", requires: [.type(.transfer), .plugin(.streaming, "manager")],
    summary: "containerd.services.transfer.v1.Transfer: pull, push, import and export in the daemon."
) { ic in
    SingleService(TransferService(
        transferrer: try ic.instance(.transfer, id: "local", as: (any Transferrer).self),
        streams: try ic.instance(.streaming, id: "manager", as: (any StreamManager).self)))
}

struct TransferService: Containerd_Services_Transfer_V1_Transfer.SimpleServiceProtocol {
    let transferrer: any Transferrer
    let streams: any StreamManager

    func transfer(request: Containerd_Services_Transfer_V1_TransferRequest, context: ServerContext) async throws
        -> Google_Protobuf_Empty
    {
        let namespace = try RequestContext.requireNamespace()
        var ends = TransferEnds(namespace: namespace, streams: streams)
        var progress: ProgressForwarder?
        let outcome: Result<Void, BerthError>
        do {
            outcome = .success(try await run(request, &ends, &progress))
        } catch {
            outcome = .failure(error)
        }
        await progress?.finish()
        await ends.closeAll()
        switch outcome {
        case .success:
            return Google_Protobuf_Empty()
        case .failure(let error) where error.code == .notImplemented:
            throw RPCError(
                code: .unimplemented,
                message: "method Transfer not implemented for \(request.source.typeURL) to \(request.destination.typeURL)")
        case .failure(let error):
            throw error
        }
    }

    /// Opens the progress stream, decodes both ends (opening their streams) and runs the transfer.
    func run(
        _ request: Containerd_Services_Transfer_V1_TransferRequest, _ ends: inout TransferEnds,
        _ progress: inout ProgressForwarder?
    ) async throws(BerthError) {
        if !request.options.progressStream.isEmpty {
            progress = ProgressForwarder(stream: try await ends.open(request.options.progressStream))
        }
        let source = try await ends.source(request.source)
        let destination = try await ends.destination(request.destination, source: request.source)
        // A pull runs many tasks at once (downloads, digests, unpack): they go to the whole pool rather than
        // staying on the event loop of the connection that asked (the gRPC transport's preference).
        let transferrer = self.transferrer
        let sink = progress?.sink
        try await withTaskExecutorPreference(globalConcurrentExecutor) { () async throws(BerthError) in
            try await transferrer.transfer(source, destination, progress: sink)
        }
    }
}

/// The decoded ends of one transfer and the streams they opened (closed together at the end).
struct TransferEnds {
    let namespace: String
    let streams: any StreamManager
    private(set) var opened: [any ManagedStream] = []

    init(namespace: String, streams: any StreamManager) {
        self.namespace = namespace
        self.streams = streams
    }

    static let registry = Containerd_Types_Transfer_OCIRegistry.protoMessageName
    static let imageStore = Containerd_Types_Transfer_ImageStore.protoMessageName
    static let importStream = Containerd_Types_Transfer_ImageImportStream.protoMessageName
    static let exportStream = Containerd_Types_Transfer_ImageExportStream.protoMessageName
    /// Messages containerd knows but cannot transfer from or to: they decode, then no transferrer takes them
    /// (Unimplemented). Any other type URL does not decode at all (Unknown, "type with url …: not found").
    static let knownOthers: Set<String> = [
        "google.protobuf.Empty", "google.protobuf.Any", "google.protobuf.Timestamp",
        Containerd_Types_Transfer_ReadStream.protoMessageName, Containerd_Types_Transfer_WriteStream.protoMessageName,
        Containerd_Types_Transfer_Progress.protoMessageName, Containerd_Types_Transfer_Data.protoMessageName,
        Containerd_Types_Transfer_WindowUpdate.protoMessageName, Containerd_Types_Transfer_AuthRequest.protoMessageName,
        Containerd_Types_Transfer_AuthResponse.protoMessageName,
        Containerd_Types_Transfer_RegistryResolver.protoMessageName,
        Containerd_Types_Transfer_UnpackConfiguration.protoMessageName,
        Containerd_Types_Transfer_ImageReference.protoMessageName,
        Containerd_Services_Streaming_V1_StreamInit.protoMessageName,
        Containerd_Services_Transfer_V1_TransferRequest.protoMessageName,
        Containerd_Types_Platform.protoMessageName, Containerd_Types_Descriptor.protoMessageName,
    ]

    /// The stream the client registered as `name`; closed with the others when the transfer ends.
    mutating func open(_ name: String) async throws(BerthError) -> any ManagedStream {
        let stream = try await streams.get(namespace: namespace, name: name)
        opened.append(stream)
        return stream
    }

    func closeAll() async {
        for stream in opened { await stream.close() }
    }

    static func name(_ any: Google_Protobuf_Any) -> String {
        StreamMessage(typeURL: any.typeURL, value: []).typeName
    }

    static func decode<M: SwiftProtobuf.Message>(_ any: Google_Protobuf_Any, as: M.Type) throws(BerthError) -> M {
        do {
            return try M(serializedBytes: any.value)
        } catch {
            throw .invalidArgument("invalid \(M.protoMessageName): \(error)")
        }
    }

    /// What an Any that is not a transfer end of this direction means: NotImplemented for a known message (so the
    /// service answers Unimplemented), Unknown for a type URL nothing here knows, as containerd.
    static func unsupported(_ any: Google_Protobuf_Any) -> BerthError {
        let name = Self.name(any)
        if knownOthers.contains(name) || [registry, imageStore, importStream, exportStream].contains(name) {
            return .notImplemented("transfer type \(any.typeURL) not supported here")
        }
        return BerthError(.unknown, "type with url \(any.typeURL): not found")
    }

    mutating func source(_ any: Google_Protobuf_Any) async throws(BerthError) -> TransferSource {
        switch Self.name(any) {
        case Self.registry:
            return .registry(try await registry(Self.decode(any, as: Containerd_Types_Transfer_OCIRegistry.self)))
        case Self.imageStore:
            return .imageStore(try Self.store(Self.decode(any, as: Containerd_Types_Transfer_ImageStore.self)))
        case Self.importStream:
            let message = try Self.decode(any, as: Containerd_Types_Transfer_ImageImportStream.self)
            let stream = try await open(message.stream)
            return .importStream(ImportByteStream(stream: stream), mediaType: message.mediaType)
        default:
            throw Self.unsupported(any)
        }
    }

    /// `source` is the request's source Any: an import's `force_compress` applies to the image store it fills.
    mutating func destination(_ any: Google_Protobuf_Any, source: Google_Protobuf_Any) async throws(BerthError)
        -> TransferDestination
    {
        switch Self.name(any) {
        case Self.registry:
            return .registry(try await registry(Self.decode(any, as: Containerd_Types_Transfer_OCIRegistry.self)))
        case Self.imageStore:
            var store = try Self.store(Self.decode(any, as: Containerd_Types_Transfer_ImageStore.self))
            if Self.name(source) == Self.importStream {
                store.forceCompress = try Self.decode(source, as: Containerd_Types_Transfer_ImageImportStream.self)
                    .forceCompress
            }
            return .imageStore(store)
        case Self.exportStream:
            let message = try Self.decode(any, as: Containerd_Types_Transfer_ImageExportStream.self)
            let format: ArchiveFormat
            if message.mediaType.isEmpty || message.mediaType.contains("oci") {
                format = .oci
            } else if message.mediaType.contains("docker") {
                format = .docker
            } else {
                throw .invalidArgument("unsupported export media type \(message.mediaType)")
            }
            let stream = try await open(message.stream)
            let spec = ExportSpec(
                format: format, platforms: message.platforms.map(Self.platform), allPlatforms: message.allPlatforms,
                skipDockerManifest: message.skipCompatibilityManifest)
            return .exportStream(ExportByteStream(stream: stream), spec)
        default:
            throw Self.unsupported(any)
        }
    }

    /// A registry end; with an auth stream, credentials are asked of the client for each host that challenges.
    mutating func registry(_ message: Containerd_Types_Transfer_OCIRegistry) async throws(BerthError) -> RegistrySpec {
        let resolver = message.resolver
        var spec = RegistrySpec(
            reference: message.reference, hostsDir: resolver.hostDir.isEmpty ? nil : resolver.hostDir,
            defaultScheme: resolver.defaultScheme.isEmpty ? nil : resolver.defaultScheme,
            headers: resolver.headers.mapValues { [$0] })
        if !resolver.authStream.isEmpty {
            let asker = AuthAsker(stream: try await open(resolver.authStream), reference: message.reference)
            spec.credentials = .callback { host in try await asker.credentials(host: host) }
        }
        return spec
    }

    static func platform(_ p: Containerd_Types_Platform) -> OCIPlatform {
        OCIPlatform(os: p.os, architecture: p.architecture, variant: p.variant.isEmpty ? nil : p.variant)
    }

    static func store(_ message: Containerd_Types_Transfer_ImageStore) -> ImageStoreSpec {
        ImageStoreSpec(
            name: message.name, labels: message.labels, platforms: message.platforms.map(platform),
            allMetadata: message.allMetadata,
            unpacks: message.unpacks.map {
                UnpackSpec(platform: $0.hasPlatform ? platform($0.platform) : nil, snapshotter: $0.snapshotter)
            },
            extraReferences: message.extraReferences.map {
                ImageReference(
                    name: $0.name, isPrefix: $0.isPrefix, allowOverwrite: $0.allowOverwrite, addDigest: $0.addDigest,
                    skipNamedDigest: $0.skipNamedDigest)
            })
    }
}
