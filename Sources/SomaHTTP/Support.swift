import Soma
import Synchronization

/// Fresh request ids: 128 random bits in hex.
enum RequestIDGenerator {
    static func next() -> String {
        var rng = SystemRandomNumberGenerator()
        let a = rng.next() as UInt64
        let b = rng.next() as UInt64
        return hex(a) + hex(b)
    }

    private static func hex(_ x: UInt64) -> String {
        let s = String(x, radix: 16)
        return String(repeating: "0", count: 16 - s.count) + s
    }
}

/// Requests in flight, kept in an atomic and mirrored to the gauge on each change.
final class InFlightCounter: Sendable {
    private let value = Atomic<Int>(0)
    private let metrics: SomaMetrics

    init(metrics: SomaMetrics) { self.metrics = metrics }

    func change(by delta: Int) {
        let now = value.add(delta, ordering: .relaxed).newValue
        metrics.set(SomaMetrics.Name.inFlight, [], Double(now))
    }

    var current: Int { value.load(ordering: .relaxed) }
}

/// Where the instance is in its life: the answer of `/ready`.
public final class Readiness: Sendable {
    public enum Phase: String, Sendable {
        case starting, ready, draining
    }

    private let state = Mutex<(phase: Phase, port: Int?)>((.starting, nil))

    public init() {}

    public var current: Phase { state.withLock { $0.phase } }

    /// The port the server listens on once it runs (useful with port 0).
    public var port: Int? { state.withLock { $0.port } }

    public func set(_ new: Phase, port: Int? = nil) {
        state.withLock { s in
            s.phase = new
            if let port { s.port = port }
        }
    }
}
