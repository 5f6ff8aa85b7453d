import Foundation

/// Deliberate slowdowns, for tests that need a slower engine than the real one. Unset (always, in
/// production), each costs one load of a constant.
///
/// - `SOMA_SLOWDOWN=1.5x`: every module analysis takes 1.5 times its own time (it spins for the
///   extra half after its work: CPU, proportional to what the module costs). `make bench-slowdown`
///   runs the engine gate with it and expects it to go red: the regression the gate exists for.
/// - `SOMA_SLOWDOWN=N` (no `x`): every module analysis spins for N microseconds first (CPU). The
///   HTTP lifecycle tests use it for requests that take long enough to be caught in flight.
/// - `SOMA_SLOWDOWN_HOLD_MS=N`: every module analysis the service runs holds its worker N ms
///   longer, asleep (no CPU). `make chaos`'s overload scenario makes an instance's capacity small
///   with it, so one load generator on the same two cores can offer ten times that capacity.
public enum Slowdown {
    private static let setting = ProcessInfo.processInfo.environment["SOMA_SLOWDOWN"] ?? ""

    /// Microseconds added to every module analysis (0 = off), read once at start-up.
    public static let microseconds: Int = {
        guard let n = Int(setting), n > 0 else { return 0 }
        return min(n, 1_000_000)
    }()

    /// Each module analysis takes this many times its own time (nil = off; from 1 to 100).
    public static let factor: Double? = {
        guard setting.hasSuffix("x"), let f = Double(setting.dropLast()), f > 1 else { return nil }
        return min(f, 100)
    }()

    /// How long each module analysis holds its worker (nil = off), read once at start-up.
    public static let hold: Duration? = {
        guard let raw = ProcessInfo.processInfo.environment["SOMA_SLOWDOWN_HOLD_MS"], let n = Int(raw), n > 0 else { return nil }
        return .milliseconds(min(n, 10_000))
    }()

    /// Runs `work` with the configured CPU slowdowns around it.
    @inline(__always)
    static func around(_ work: () -> Void) {
        guard microseconds > 0 || factor != nil else { return work() }
        let clock = ContinuousClock()
        if microseconds > 0 { spin(until: clock.now.advanced(by: .microseconds(microseconds)), clock) }
        let started = clock.now
        work()
        if let factor { spin(until: started.advanced(by: (clock.now - started) * factor), clock) }
    }

    private static func spin(until end: ContinuousClock.Instant, _ clock: ContinuousClock) {
        while clock.now < end {}
    }
}
