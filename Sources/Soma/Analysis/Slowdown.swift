import Foundation

/// A deliberate slowdown for proving that the benchmark gates can fail: with `SOMA_SLOWDOWN=N`
/// in the environment, every module analysis spins for N microseconds first. `make ci` runs the
/// gated benchmarks once with it set and expects them to go red. Unset (always, in production),
/// the cost is one load of a constant.
public enum Slowdown {
    /// Microseconds added to every module analysis (0 = off), read once at start-up.
    public static let microseconds: Int = {
        guard let raw = ProcessInfo.processInfo.environment["SOMA_SLOWDOWN"], let n = Int(raw), n > 0 else { return 0 }
        return min(n, 1_000_000)
    }()

    @inline(__always)
    static func apply() {
        guard microseconds > 0 else { return }
        let clock = ContinuousClock()
        let end = clock.now.advanced(by: .microseconds(microseconds))
        while clock.now < end {}
    }
}
