import BerthAPI
import BerthCore
import Foundation
import SwiftProtobuf

/// Conversions between API messages and BerthCore values shared by several services.
public enum Convert {
    /// A digest from a request field: InvalidArgument when malformed (containerd: `digest.Parse`).
    public static func digest(_ text: String) throws(BerthError) -> Digest { try Digest(parsing: text) }

    public static func timestamp(_ date: Date) -> Google_Protobuf_Timestamp { Google_Protobuf_Timestamp(date: date) }

    public static func descriptor(_ d: Containerd_Types_Descriptor) throws(BerthError) -> Descriptor {
        guard !d.digest.isEmpty else { throw .invalidArgument("Target.Digest must be set") }
        return Descriptor(mediaType: d.mediaType, digest: try digest(d.digest), size: d.size, annotations: d.annotations)
    }

    public static func descriptor(_ d: Descriptor) -> Containerd_Types_Descriptor {
        var out = Containerd_Types_Descriptor()
        out.mediaType = d.mediaType
        out.digest = d.digest.description
        out.size = d.size
        out.annotations = d.annotations
        return out
    }
}
