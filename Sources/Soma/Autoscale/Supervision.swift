/// Decides when an instance must be replaced, from its readiness probes: open-source nginx has no
/// active health checks, so nothing else notices an instance that died or stopped answering
/// (docs/OPERATIONS.md, "Autoscaling"). A pure state machine: probes in, replacements out.
///
/// - A refused connection means no process listens: the instance is replaced at once.
/// - A `/ready` that answers anything but 200, or does not answer within the probe's timeout, is a
///   failure; `failuresBeforeReplace` in a row replace it. A single 503 is normal (a drain, a
///   moment of overload), a run of them is not.
public struct SupervisionPolicy: Sendable {
    public enum Probe: Sendable, Hashable {
        case ready
        /// `/ready` answered another status, or not in time.
        case failing(String)
        /// The connection was refused: nothing listens.
        case unreachable(String)
    }

    public let failuresBeforeReplace: Int
    private var failures: [String: Int] = [:]

    public init(failuresBeforeReplace: Int = 3) {
        precondition(failuresBeforeReplace >= 1, "failuresBeforeReplace must be at least 1")
        self.failuresBeforeReplace = failuresBeforeReplace
    }

    /// Takes the probes of one round (by instance id) and returns the ids to replace, sorted.
    /// Instances absent from the round are forgotten (scaled away or replaced).
    public mutating func observe(_ probes: [String: Probe]) -> [String] {
        failures = failures.filter { probes[$0.key] != nil }
        var replace: [String] = []
        for (id, probe) in probes {
            switch probe {
            case .ready:
                failures[id] = nil
            case .failing:
                let count = failures[id, default: 0] + 1
                failures[id] = count
                if count >= failuresBeforeReplace { replace.append(id) }
            case .unreachable:
                replace.append(id)
            }
        }
        for id in replace { failures[id] = nil }
        return replace.sorted()
    }
}
