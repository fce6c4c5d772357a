import BerthAPI
import BerthCore
import Foundation
import SwiftProtobuf

/// containerd packs events as `Any` whose type URL is the bare message name (`containerd.events.NamespaceCreate`,
/// no `types.googleapis.com/` prefix); `ctr events` resolves exactly that name.
public enum EventCoding {
    public static func typeURL<M: SwiftProtobuf.Message>(_: M.Type) -> String { M.protoMessageName }

    /// Builds an exchange event from a protobuf event message; `fields` feed `event.*` filters.
    public static func event<M: SwiftProtobuf.Message>(
        topic: String, namespace: String, _ message: M, fields: [String: String] = [:]
    ) throws(BerthError) -> Event {
        do {
            let payload: [UInt8] = try message.serializedBytes()
            return Event(namespace: namespace, topic: topic, typeURL: typeURL(M.self), payload: payload, fields: fields)
        } catch {
            throw .internalError("encoding event \(M.protoMessageName): \(error)")
        }
    }

    /// The event as containerd's `Any`.
    public static func any(_ event: Event) -> Google_Protobuf_Any {
        var any = Google_Protobuf_Any()
        any.typeURL = event.typeURL
        any.value = Data(event.payload)
        return any
    }
}

extension EventCoding {
    /// containerd's event messages by type URL, so events arriving through Publish/Forward can be filtered on
    /// `event.<field>` like the daemon's own.
    static let knownTypes: [String: any SwiftProtobuf.Message.Type] = {
        let types: [any SwiftProtobuf.Message.Type] = [
            Containerd_Events_ContainerCreate.self, Containerd_Events_ContainerUpdate.self,
            Containerd_Events_ContainerDelete.self, Containerd_Events_ContentDelete.self,
            Containerd_Events_NamespaceCreate.self, Containerd_Events_NamespaceUpdate.self,
            Containerd_Events_NamespaceDelete.self, Containerd_Events_SnapshotPrepare.self,
            Containerd_Events_SnapshotCommit.self, Containerd_Events_SnapshotRemove.self,
            Containerd_Events_TaskCreate.self, Containerd_Events_TaskStart.self, Containerd_Events_TaskDelete.self,
            Containerd_Events_TaskIO.self, Containerd_Events_TaskExit.self, Containerd_Events_TaskOOM.self,
            Containerd_Events_TaskExecAdded.self, Containerd_Events_TaskExecStarted.self,
            Containerd_Events_TaskPaused.self, Containerd_Events_TaskResumed.self,
            Containerd_Events_TaskCheckpointed.self,
        ]
        return Dictionary(types.map { ($0.protoMessageName, $0) }, uniquingKeysWith: { a, _ in a })
    }()

    /// The event's fields by proto field name and dotted path (`name`, `labels.foo`); empty for unknown types.
    public static func fields(typeURL: String, payload: Data) -> [String: String] {
        let name = typeURL.split(separator: "/").last.map(String.init) ?? typeURL
        guard let json = self.json(typeURL: name, payload: payload),
            let object = try? JSONSerialization.jsonObject(with: Data(json.utf8))
        else { return [:] }
        var fields: [String: String] = [:]
        flatten(object, prefix: "", into: &fields)
        return fields
    }

    static func flatten(_ value: Any, prefix: String, into fields: inout [String: String]) {
        switch value {
        case let object as [String: Any]:
            for (key, child) in object { flatten(child, prefix: prefix.isEmpty ? key : "\(prefix).\(key)", into: &fields) }
        case let string as String: fields[prefix] = string
        case let number as NSNumber: fields[prefix] = number.stringValue
        default: break
        }
    }
}

extension EventCoding {
    /// The event payload as JSON (proto field names), for display; nil for unknown types.
    public static func json(typeURL: String, payload: Data) -> String? {
        let name = typeURL.split(separator: "/").last.map(String.init) ?? typeURL
        guard let type = knownTypes[name], let message = try? type.init(serializedBytes: [UInt8](payload)) else {
            return nil
        }
        var options = JSONEncodingOptions()
        options.preserveProtoFieldNames = true
        return try? message.jsonString(options: options)
    }
}
