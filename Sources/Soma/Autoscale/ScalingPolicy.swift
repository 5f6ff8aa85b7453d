/// The thresholds and windows of the scaling policy. The defaults are the product brief's: up one
/// instance when CPU has stayed above 70 % for 5 minutes, down one when it has stayed below 30 %
/// for 10 minutes, between 2 and 10 instances (docs/OPERATIONS.md, "Autoscaling").
public struct ScalingConfiguration: Sendable, Hashable {
    public var minInstances: Int
    public var maxInstances: Int
    /// Mean CPU utilisation (a fraction of each instance's CPU budget) above which load is high.
    public var scaleUpAbove: Double
    /// How long load must stay high, with no gap in the samples, before one instance is added.
    public var scaleUpAfter: Duration
    /// Mean CPU utilisation below which load is low.
    public var scaleDownBelow: Double
    /// How long load must stay low before one instance is removed.
    public var scaleDownAfter: Duration
    /// After any change of the instance count, no window starts until this much time has passed:
    /// a new instance needs a few scrapes before its CPU shows in the mean, a removed one's load
    /// needs as long to move onto the others.
    public var cooldown: Duration
    /// Two observations further apart than this do not make one window: the policy does not
    /// assume what it did not see.
    public var maximumSampleGap: Duration

    public init(
        minInstances: Int = 2,
        maxInstances: Int = 10,
        scaleUpAbove: Double = 0.70,
        scaleUpAfter: Duration = .seconds(300),
        scaleDownBelow: Double = 0.30,
        scaleDownAfter: Duration = .seconds(600),
        cooldown: Duration = .seconds(60),
        maximumSampleGap: Duration = .seconds(60)
    ) {
        precondition(minInstances >= 1, "minInstances must be at least 1")
        precondition(maxInstances >= minInstances, "maxInstances must be at least minInstances")
        precondition(scaleDownBelow >= 0 && scaleDownBelow < scaleUpAbove, "scaleDownBelow must be in [0, scaleUpAbove)")
        precondition(scaleUpAfter >= .zero && scaleDownAfter >= .zero && cooldown >= .zero, "windows must not be negative")
        precondition(maximumSampleGap > .zero, "maximumSampleGap must be positive")
        self.minInstances = minInstances
        self.maxInstances = maxInstances
        self.scaleUpAbove = scaleUpAbove
        self.scaleUpAfter = scaleUpAfter
        self.scaleDownBelow = scaleDownBelow
        self.scaleDownAfter = scaleDownAfter
        self.cooldown = cooldown
        self.maximumSampleGap = maximumSampleGap
    }
}

/// Decides how many instances the service should run, from time-stamped CPU samples: the brief's
/// sustained-threshold rule as a pure state machine (no clock, no I/O), so every case is a unit
/// test on a manual clock.
///
/// Each observation carries the instance count the stack is set to and the CPU utilisation of the
/// instances that reported (a fraction of one instance's CPU budget). The policy keeps two
/// windows over the mean of those samples:
/// - HIGH starts at the first observation above `scaleUpAbove` and lasts while every later one is
///   above it; once it has lasted `scaleUpAfter`, the count goes up by one (unless at the maximum).
/// - LOW is the same below `scaleDownBelow` and `scaleDownAfter`, down by one (unless at the minimum).
///
/// A window breaks on an observation on the other side of its threshold, on an observation with no
/// samples, on a gap longer than `maximumSampleGap`, and on any change of the count (the mean of a
/// different number of instances is a different figure). After a change no window starts for
/// `cooldown`. The space between the two thresholds holds the count, and a step is always one
/// instance, so the count cannot flap. A count outside [min, max] is brought inside at once.
///
/// An instance that stops reporting mid-window (it died, or a scrape failed) leaves the mean to
/// the others: their CPU is the load that is really there. Replacing it is the supervisor's job.
public struct ScalingPolicy<Instant: InstantProtocol>: Sendable where Instant.Duration == Duration {
    public enum Reason: String, Sendable, Hashable, CaseIterable {
        /// The count was below the minimum.
        case belowMinimum = "below_minimum"
        /// The count was above the maximum.
        case aboveMaximum = "above_maximum"
        /// CPU stayed above the threshold for the whole window: one more instance.
        case cpuHigh = "cpu_high"
        /// CPU stayed below the threshold for the whole window: one instance fewer.
        case cpuLow = "cpu_low"
        /// CPU stayed high, but the count is at the maximum (an operator should know: alert).
        case atMaximum = "at_maximum"
        /// A window is open and has not lasted long enough yet.
        case pending
        /// CPU is between the thresholds.
        case steady
        /// The count changed a short while ago; no window starts yet.
        case cooldown
        /// No instance reported CPU.
        case noSamples = "no_samples"
    }

    public struct Decision: Sendable, Hashable {
        /// The count the stack should run.
        public var desired: Int
        public var reason: Reason
        /// The mean CPU utilisation of the reporting instances, when any reported.
        public var meanCPU: Double?
        /// How long the open window (high or low) has lasted, when one is open.
        public var windowAge: Duration?
    }

    private enum Window: Equatable {
        case high(since: Instant)
        case low(since: Instant)
    }

    public let configuration: ScalingConfiguration
    private var window: Window?
    private var lastObservation: Instant?
    private var lastCount: Int?
    private var changedAt: Instant?

    public init(configuration: ScalingConfiguration = .init()) {
        self.configuration = configuration
    }

    /// Takes one observation: `instances` is the count the stack runs now, `cpu` the utilisation of
    /// each instance that reported (by instance id; values ≥ 0, where 1 is a full budget).
    public mutating func observe(at now: Instant, instances: Int, cpu: [String: Double]) -> Decision {
        let c = configuration
        let samples = cpu.values.filter { $0.isFinite && $0 >= 0 }
        let mean = samples.isEmpty ? nil : samples.reduce(0, +) / Double(samples.count)
        defer { lastObservation = now }

        if let last = lastCount, last != instances {
            // Changed by us or by someone else: either way the old windows describe another fleet.
            window = nil
            changedAt = now
        }
        lastCount = instances
        if instances < c.minInstances { return changed(to: c.minInstances, .belowMinimum, mean, at: now) }
        if instances > c.maxInstances { return changed(to: c.maxInstances, .aboveMaximum, mean, at: now) }

        if let last = lastObservation, last.duration(to: now) > c.maximumSampleGap { window = nil }
        guard let mean else {
            window = nil
            return Decision(desired: instances, reason: .noSamples, meanCPU: nil, windowAge: nil)
        }
        if let changedAt, changedAt.duration(to: now) < c.cooldown {
            window = nil
            return Decision(desired: instances, reason: .cooldown, meanCPU: mean, windowAge: nil)
        }

        switch (mean > c.scaleUpAbove, mean < c.scaleDownBelow, window) {
        case (true, _, .high): break
        case (true, _, _): window = .high(since: now)
        case (_, true, .low): break
        case (_, true, _): window = .low(since: now)
        default:
            window = nil
            return Decision(desired: instances, reason: .steady, meanCPU: mean, windowAge: nil)
        }

        switch window {
        case .high(let since):
            let age = since.duration(to: now)
            guard age >= c.scaleUpAfter else { return Decision(desired: instances, reason: .pending, meanCPU: mean, windowAge: age) }
            guard instances < c.maxInstances else { return Decision(desired: instances, reason: .atMaximum, meanCPU: mean, windowAge: age) }
            return changed(to: instances + 1, .cpuHigh, mean, at: now, age: age)
        case .low(let since):
            let age = since.duration(to: now)
            guard age >= c.scaleDownAfter, instances > c.minInstances else {
                // At the minimum a low window simply stays open: nothing to do, nothing to report.
                return Decision(desired: instances, reason: instances > c.minInstances ? .pending : .steady, meanCPU: mean, windowAge: age)
            }
            return changed(to: instances - 1, .cpuLow, mean, at: now, age: age)
        case nil:
            preconditionFailure("a window was set above")
        }
    }

    private mutating func changed(to desired: Int, _ reason: Reason, _ mean: Double?, at now: Instant, age: Duration? = nil) -> Decision {
        window = nil
        changedAt = now
        lastCount = desired
        return Decision(desired: desired, reason: reason, meanCPU: mean, windowAge: age)
    }
}
