import BerthAPI
import BerthCore
import BerthGRPC
import GRPCCore
import SwiftProtobuf

public let registration = Registration(
    type: .grpc, id: "version", summary: "containerd.services.version.v1.Version: the daemon's version."
) { _ in SingleService(VersionService()) }

struct VersionService: Containerd_Services_Version_V1_Version.SimpleServiceProtocol {
    func version(request: Google_Protobuf_Empty, context: ServerContext) async throws
        -> Containerd_Services_Version_V1_VersionResponse
    {
        var response = Containerd_Services_Version_V1_VersionResponse()
        response.version = BuildInfo.version
        response.revision = BuildInfo.revision
        return response
    }
}
