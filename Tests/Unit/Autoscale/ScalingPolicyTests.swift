import Soma
import Testing

/// The scaling policy on a manual clock: time is the observation's instant, nothing sleeps.
@Suite struct ScalingPolicyTests {
    typealias Instant = ManualClock.Instant
    typealias Policy = ScalingPolicy<Instant>

    /// Short windows so the arithmetic is readable: up above 70 % for 60 s, down below 30 % for
    /// 120 s, 30 s of cooldown, observations every 10 s, 2 to 4 instances.
    static let configuration = ScalingConfiguration(
        minInstances: 2, maxInstances: 4, scaleUpAbove: 0.70, scaleUpAfter: .seconds(60), scaleDownBelow: 0.30,
        scaleDownAfter: .seconds(120), cooldown: .seconds(30), maximumSampleGap: .seconds(25))

    /// Drives a policy with one observation every `step` and remembers the count it asked for, as
    /// a stack that always does what it is told would.
    struct Run {
        var policy = Policy(configuration: ScalingPolicyTests.configuration)
        var now = Instant(offset: .zero)
        var instances: Int
        var decisions: [(at: Duration, decision: Policy.Decision)] = []

        init(instances: Int) { self.instances = instances }

        /// One observation at the current time with every instance at `cpu` (or the given map), then
        /// time moves on by `step`.
        @discardableResult
        mutating func observe(_ cpu: Double?, step: Duration = .seconds(10), map: [String: Double]? = nil) -> Policy.Decision {
            let samples = map ?? (cpu.map { value in Dictionary(uniqueKeysWithValues: (1...instances).map { ("soma-\($0)", value) }) } ?? [:])
            let decision = policy.observe(at: now, instances: instances, cpu: samples)
            decisions.append((now.offset, decision))
            instances = decision.desired
            now = now.advanced(by: step)
            return decision
        }

        /// Observes `cpu` for `duration`, one observation per `step`; returns the decisions that changed the count.
        mutating func hold(_ cpu: Double?, for duration: Duration, step: Duration = .seconds(10), map: [String: Double]? = nil) -> [Policy.Decision] {
            var changes: [Policy.Decision] = []
            let end = now.advanced(by: duration)
            while now < end {
                let before = instances
                let decision = observe(cpu, step: step, map: map)
                if decision.desired != before { changes.append(decision) }
            }
            return changes
        }
    }

    @Test func sustainedHighLoadAddsOneInstanceWhenTheWindowHasLasted() {
        var run = Run(instances: 2)
        // Observations at 0, 10, ..., 50 s: the window (since 0 s) is 50 s old at the last one.
        #expect(run.hold(0.9, for: .seconds(60)).isEmpty)
        #expect(run.decisions.last?.decision.reason == .pending)
        #expect(run.decisions.last?.decision.windowAge == .seconds(50))
        // At 60 s it has lasted 60 s: one more instance, and only one.
        let decision = run.observe(0.9)
        #expect(decision.desired == 3)
        #expect(decision.reason == .cpuHigh)
        #expect(decision.meanCPU == 0.9)
    }

    @Test func spikyLoadNeverScales() {
        var run = Run(instances: 2)
        // Five high observations, one in the middle band, for ten minutes: no window ever lasts 60 s.
        for _ in 0..<10 {
            #expect(run.hold(0.95, for: .seconds(50)).isEmpty)
            #expect(run.observe(0.5).reason == .steady)
        }
        #expect(run.instances == 2)
    }

    @Test func aLowSampleBetweenHighOnesRestartsTheWindow() {
        var run = Run(instances: 2)
        #expect(run.hold(0.9, for: .seconds(50)).isEmpty)
        run.observe(0.2)  // below the up threshold: the high window ends (a low one starts)
        #expect(run.hold(0.9, for: .seconds(60)).isEmpty, "the window starts again at the next high sample")
        #expect(run.observe(0.9).desired == 3)
    }

    @Test func theThresholdsThemselvesAreNotHighOrLow() {
        var run = Run(instances: 3)
        #expect(run.hold(0.70, for: .seconds(600)).isEmpty)
        #expect(run.hold(0.30, for: .seconds(600)).isEmpty)
        #expect(run.decisions.allSatisfy { $0.decision.reason == .steady })
    }

    @Test func sustainedLowLoadRemovesOneInstanceAfterItsLongerWindow() {
        var run = Run(instances: 4)
        #expect(run.hold(0.1, for: .seconds(120)).isEmpty, "observations up to 110 s: the low window is 110 s old")
        let decision = run.observe(0.1)
        #expect(decision.desired == 3)
        #expect(decision.reason == .cpuLow)
    }

    @Test func theCountNeverLeavesItsBoundsThroughThePolicy() {
        var up = Run(instances: 2)
        let ups = up.hold(1.0, for: .seconds(1200))
        #expect(ups.map(\.desired) == [3, 4], "one step at a time, up to the maximum")
        #expect(up.decisions.last?.decision.reason == .atMaximum)
        #expect(up.decisions.last?.decision.desired == 4)

        var down = Run(instances: 4)
        let downs = down.hold(0.0, for: .seconds(1200))
        #expect(downs.map(\.desired) == [3, 2], "one step at a time, down to the minimum")
        #expect(down.decisions.last?.decision.reason == .steady, "a low window at the minimum asks for nothing")
    }

    @Test func aCountOutsideTheBoundsIsBroughtInsideAtOnce() {
        var low = Run(instances: 1)
        let first = low.observe(0.5)
        #expect(first.desired == 2)
        #expect(first.reason == .belowMinimum)

        var high = Run(instances: 7)
        let decision = high.observe(nil)
        #expect(decision.desired == 4)
        #expect(decision.reason == .aboveMaximum)
    }

    @Test func noWindowStartsDuringTheCooldownAfterAChange() {
        var run = Run(instances: 2)
        _ = run.hold(0.9, for: .seconds(70))  // scales to 3 at 60 s
        #expect(run.instances == 3)
        // 70 s and 80 s are inside the 30 s cooldown (change at 60 s): no window, whatever the CPU.
        #expect(run.observe(0.9).reason == .cooldown)
        #expect(run.observe(0.9).reason == .cooldown)
        // The window opens at 90 s, so the next step comes at 150 s, not earlier.
        let changes = run.hold(0.9, for: .seconds(60))
        #expect(changes.isEmpty)
        #expect(run.decisions.last?.decision.windowAge == .seconds(50))
        #expect(run.observe(0.9).desired == 4)
        #expect(run.decisions.last?.at == .seconds(150))
    }

    @Test func loadThatFallsAfterAScaleUpDoesNotFlap() {
        // The extra instance halves the load per instance: 0.9 becomes 0.6, inside the band. It stays.
        var run = Run(instances: 2)
        _ = run.hold(0.9, for: .seconds(70))
        #expect(run.instances == 3)
        #expect(run.hold(0.6, for: .seconds(3600)).isEmpty)
    }

    @Test func missingSamplesMakeNoWindow() {
        var run = Run(instances: 2)
        #expect(run.hold(0.9, for: .seconds(50)).isEmpty)
        #expect(run.observe(nil).reason == .noSamples)
        #expect(run.hold(0.9, for: .seconds(60)).isEmpty, "the window starts again after the silent observation")
        #expect(run.observe(0.9).desired == 3)
    }

    @Test func aGapBetweenObservationsBreaksTheWindow() {
        var run = Run(instances: 2)
        #expect(run.hold(0.9, for: .seconds(40)).isEmpty)  // 0..30 s
        // Next observation 30 s after the last (at 60 s): longer than the 25 s allowed gap.
        run.now = run.now.advanced(by: .seconds(20))
        let afterGap = run.observe(0.9)
        #expect(afterGap.reason == .pending)
        #expect(afterGap.windowAge == .zero, "a new window, not one that covers what nobody saw")
    }

    @Test func anInstanceThatStopsReportingLeavesTheMeanToTheOthers() {
        var run = Run(instances: 3)
        #expect(run.hold(0.8, for: .seconds(30)).isEmpty)
        // soma-3 dies: the other two carry its load (and report it); the window goes on.
        #expect(run.hold(nil, for: .seconds(30), map: ["soma-1": 0.5, "soma-2": 1.0]).isEmpty)
        let decision = run.observe(nil, map: ["soma-1": 0.5, "soma-2": 1.0])
        #expect(decision.desired == 4)
        #expect(decision.meanCPU == 0.75)
    }

    @Test func aCountChangedByAnotherHandRestartsTheWindows() {
        var run = Run(instances: 2)
        #expect(run.hold(0.9, for: .seconds(50)).isEmpty)
        run.instances = 3  // an operator scaled by hand
        #expect(run.observe(0.9).reason == .cooldown)
    }

    @Test func unusableSamplesAreLeftOut() {
        var policy = Policy(configuration: Self.configuration)
        let decision = policy.observe(at: Instant(offset: .zero), instances: 2, cpu: ["a": .nan, "b": -1, "c": 0.5])
        #expect(decision.meanCPU == 0.5)
        let none = policy.observe(at: Instant(offset: .seconds(10)), instances: 2, cpu: ["a": .infinity])
        #expect(none.reason == .noSamples)
    }

    /// The brief's numbers, on their own scale: 5 minutes above 70 %, 10 minutes below 30 %.
    @Test func theDefaultsAreTheBriefs() {
        let brief = ScalingConfiguration()
        #expect(brief.minInstances == 2 && brief.maxInstances == 10)
        #expect(brief.scaleUpAbove == 0.70 && brief.scaleUpAfter == .seconds(300))
        #expect(brief.scaleDownBelow == 0.30 && brief.scaleDownAfter == .seconds(600))
        var policy = ScalingPolicy<Instant>(configuration: brief)
        var now = Instant(offset: .zero)
        var decision = policy.observe(at: now, instances: 2, cpu: ["a": 0.75])
        while decision.desired == 2 && now.offset < .seconds(400) {
            now = now.advanced(by: .seconds(15))
            decision = policy.observe(at: now, instances: 2, cpu: ["a": 0.75])
        }
        #expect(now.offset == .seconds(300))
        #expect(decision.desired == 3)
    }
}

@Suite struct SupervisionPolicyTests {
    @Test func aRefusedConnectionIsReplacedAtOnce() {
        var policy = SupervisionPolicy(failuresBeforeReplace: 3)
        #expect(policy.observe(["a": .ready, "b": .unreachable("refused")]) == ["b"])
    }

    @Test func failuresMustComeInARow() {
        var policy = SupervisionPolicy(failuresBeforeReplace: 3)
        #expect(policy.observe(["a": .failing("503")]).isEmpty)
        #expect(policy.observe(["a": .failing("503")]).isEmpty)
        #expect(policy.observe(["a": .ready]).isEmpty, "a good probe clears the count")
        #expect(policy.observe(["a": .failing("503")]).isEmpty)
        #expect(policy.observe(["a": .failing("timeout")]).isEmpty)
        #expect(policy.observe(["a": .failing("503")]) == ["a"])
        #expect(policy.observe(["a": .failing("503")]).isEmpty, "after a replacement the count starts again")
    }

    @Test func anInstanceThatLeftIsForgotten() {
        var policy = SupervisionPolicy(failuresBeforeReplace: 2)
        #expect(policy.observe(["a": .failing("503"), "b": .ready]).isEmpty)
        #expect(policy.observe(["b": .ready]).isEmpty)  // a scaled away
        #expect(policy.observe(["a": .failing("503"), "b": .ready]).isEmpty, "a new a starts from zero")
    }
}

@Suite struct PrometheusCPUQueryTests {
    @Test func readsEachInstancesRateByItsInstanceID() throws {
        let body = """
            {"status":"success","data":{"resultType":"vector","result":[
              {"metric":{"instance":"127.0.0.1:8801","instance_id":"soma-1","job":"soma"},"value":[1733480000.1,"0.5"]},
              {"metric":{"instance":"127.0.0.1:8802","instance_id":"soma-2","job":"soma"},"value":[1733480000.1,"1.5"]},
              {"metric":{"instance":"127.0.0.1:9999","job":"soma"},"value":[1733480000.1,"0.7"]},
              {"metric":{"instance_id":"soma-3"},"value":[1733480000.1,"NaN"]}
            ]}}
            """
        let query = PrometheusCPUQuery(range: .seconds(20), coresPerInstance: 2)
        #expect(try query.utilisation(from: .init(body.utf8)) == ["soma-1": 0.25, "soma-2": 0.75])
        #expect(query.expression == #"rate(process_cpu_seconds_total{job="soma"}[20s])"#)
        #expect(query.path == "/api/v1/query?query=rate%28process_cpu_seconds_total%7Bjob%3D%22soma%22%7D%5B20s%5D%29")
    }

    @Test func refusalsAndOtherShapesAreErrors() {
        let query = PrometheusCPUQuery()
        #expect(throws: PrometheusCPUQuery.Failure.self) {
            try query.utilisation(from: .init(#"{"status":"error","errorType":"bad_data","error":"parse error"}"#.utf8))
        }
        #expect(throws: PrometheusCPUQuery.Failure.self) {
            try query.utilisation(from: .init(#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#.utf8))
        }
        #expect(throws: PrometheusCPUQuery.Failure.self) { try query.utilisation(from: .init("<html>".utf8)) }
    }
}
