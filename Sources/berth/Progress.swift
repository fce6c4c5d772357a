import BerthAPI
import Foundation
import Synchronization

/// Renders a transfer's progress events (any event name: `resolving`, `downloading`, `complete`, `extracting`, …).
/// On a terminal: one line per object with a bar, bytes, rate and ETA, redrawn in place. Otherwise: a plain line
/// whenever an object's event (or the overall status) changes.
final class ProgressDisplay: Sendable {
    struct Node {
        var name: String
        var event: String
        var progress: Int64
        var total: Int64
        var depth: Int
        var started: Date
    }

    struct State {
        var nodes: [String: Node] = [:]
        var order: [String] = []
        var status = ""
        var drawnLines = 0
        var lastDraw = Date.distantPast
    }

    private let state = Mutex(State())
    private let handle: FileHandle
    private let terminal: Bool
    private let start = Date()

    /// `toStandardError` when stdout carries data (an export to `-`).
    init(toStandardError: Bool = false) {
        handle = toStandardError ? FileHandle.standardError : FileHandle.standardOutput
        terminal = isatty(toStandardError ? 2 : 1) == 1
    }

    func update(_ p: Containerd_Types_Transfer_Progress) {
        let text: String? = state.withLock { state in
            guard !p.name.isEmpty else {
                guard p.event != state.status else { return nil }
                state.status = p.event
                return terminal ? redraw(&state, force: true) : "\(p.event)\n"
            }
            let now = Date()
            var changed = true
            if var node = state.nodes[p.name] {
                changed = node.event != p.event
                node.event = p.event
                node.progress = p.progress
                node.total = max(p.total, node.total)
                state.nodes[p.name] = node
            } else {
                let depth = p.parents.compactMap { state.nodes[$0]?.depth }.max().map { $0 + 1 } ?? 0
                state.nodes[p.name] = Node(
                    name: p.name, event: p.event, progress: p.progress, total: p.total, depth: depth, started: now)
                state.order.append(p.name)
            }
            if terminal { return redraw(&state, force: changed) }
            guard changed, let node = state.nodes[p.name] else { return nil }
            return Self.plainLine(node)
        }
        if let text { handle.write(Data(text.utf8)) }
    }

    /// The last redraw (terminal) and a summary line.
    func finish() {
        let text: String = state.withLock { state in
            var out = terminal ? redraw(&state, force: true) ?? "" : ""
            let total = state.nodes.values.reduce(Int64(0)) { $0 + $1.progress }
            let elapsed = Date().timeIntervalSince(start)
            let rate = elapsed > 0 ? Int64(Double(total) / elapsed) : 0
            out += String(format: "done: elapsed %.1fs, total %@ (%@/s)\n", elapsed, Self.bytes(total), Self.bytes(rate))
            return out
        }
        handle.write(Data(text.utf8))
    }

    /// Cursor up over the previous drawing, then every line again; at most ten times a second unless forced.
    private func redraw(_ state: inout State, force: Bool) -> String? {
        let now = Date()
        guard force || now.timeIntervalSince(state.lastDraw) >= 0.1 else { return nil }
        state.lastDraw = now
        var out = state.drawnLines > 0 ? "\u{1B}[\(state.drawnLines)A" : ""
        var lines = state.order.compactMap { state.nodes[$0] }.map { Self.terminalLine($0, now: now) }
        if !state.status.isEmpty { lines.append(state.status) }
        for line in lines { out += "\u{1B}[2K" + line + "\n" }
        state.drawnLines = lines.count
        return out
    }

    static func plainLine(_ node: Node) -> String {
        let bytes = node.total > 0 ? " \(Self.bytes(node.progress))/\(Self.bytes(node.total))" : ""
        return "\(displayName(node.name)): \(node.event)\(bytes)\n"
    }

    static func terminalLine(_ node: Node, now: Date) -> String {
        let indent = String(repeating: "  ", count: min(node.depth, 4))
        let label = indent + displayName(node.name)
        let name = label.padding(toLength: max(28, label.count), withPad: " ", startingAt: 0)
        let event = node.event.padding(toLength: max(14, node.event.count), withPad: " ", startingAt: 0)
        guard node.total > 0 else { return name + " " + event }
        let fraction = min(1, max(0, Double(node.progress) / Double(node.total)))
        let width = 30
        let filled = Int(fraction * Double(width))
        let bar = "[" + String(repeating: "=", count: filled) + (filled < width ? ">" : "")
            + String(repeating: " ", count: max(0, width - filled - 1)) + "]"
        let elapsed = now.timeIntervalSince(node.started)
        let rate = elapsed > 0.05 ? Double(node.progress) / elapsed : 0
        var tail = " \(bytes(node.progress))/\(bytes(node.total))"
        if node.progress < node.total, rate > 0 {
            let eta = Int((Double(node.total - node.progress) / rate).rounded(.up))
            tail += "  \(bytes(Int64(rate)))/s  ETA \(eta)s"
        }
        return name + " " + event + " " + bar + tail
    }

    /// ctr's display names: parts split on `-`, digests shortened to their first 12 hex digits.
    static func displayName(_ name: String) -> String {
        name.split(separator: "-", omittingEmptySubsequences: false).map { part in
            part.hasPrefix("sha256:") && part.count == 71 ? "(" + part.dropFirst(7).prefix(12) + ")" : String(part)
        }.joined(separator: " ")
    }

    static func bytes(_ size: Int64) -> String { Output.bytes(size) }
}
