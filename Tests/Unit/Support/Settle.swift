import Synchronization

// Helpers for tests of code that runs on other tasks (SessionManagerTests, TimelineTests).

/// A value behind a lock, shared between tasks.
final class Locked<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>

    init(_ value: Value) { mutex = Mutex(value) }

    var value: Value { mutex.withLock { $0 } }

    func withLock<R: Sendable>(_ body: (inout Value) -> R) -> R {
        mutex.withLock { body(&$0) }
    }
}

struct SettleTimeout: Error, CustomStringConvertible {
    var what: String
    var description: String { "timed out waiting for \(what)" }
}

/// Polls `condition` until it holds, yielding and sleeping 1 ms between tries, at most 5 000 tries:
/// for waiting on state another task changes, never for measuring time.
func settle(_ what: String, _ condition: () -> Bool) async throws {
    for _ in 0..<5_000 {
        if condition() { return }
        await Task.yield()
        try await Task.sleep(for: .milliseconds(1))
    }
    if condition() { return }
    throw SettleTimeout(what: what)
}
