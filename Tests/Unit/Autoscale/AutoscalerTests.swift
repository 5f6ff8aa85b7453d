import Logging
import MetricsTestKit
import Soma
import Synchronization
import Testing

/// A stack that does what it is told and remembers it.
final class AutoscaleFakeStack: ScalableStack {
    struct State {
        var instances: [StackInstance]
        var scaledTo: [Int] = []
        var replaced: [String] = []
        var failScale = false
    }

    let state: Mutex<State>

    init(count: Int) {
        state = Mutex(State(instances: (1...count).map { StackInstance(id: "soma-\($0)", url: "http://127.0.0.1:\(8800 + $0)") }))
    }

    struct Refused: Error {}

    func instances() async throws -> [StackInstance] { state.withLock { $0.instances } }

    func scale(to count: Int) async throws {
        try state.withLock { s in
            if s.failScale { throw Refused() }
            s.scaledTo.append(count)
            s.instances = (1...count).map { StackInstance(id: "soma-\($0)", url: "http://127.0.0.1:\(8800 + $0)") }
        }
    }

    func replace(_ instance: StackInstance) async throws { state.withLock { $0.replaced.append(instance.id) } }
}

final class AutoscaleFakeCPU: CPUSource {
    let values = Mutex<[String: Double]>([:])
    func utilisation() async throws -> [String: Double] { values.withLock { $0 } }
}

final class AutoscaleFakeProbe: ReadinessProbe {
    let probes = Mutex<[String: SupervisionPolicy.Probe]>([:])
    func probe(_ instance: StackInstance) async -> SupervisionPolicy.Probe { probes.withLock { $0[instance.id] ?? .ready } }
}

final class EventList: Sendable {
    private let list = Mutex<[AutoscaleEvent]>([])
    func append(_ event: AutoscaleEvent) { list.withLock { $0.append(event) } }
    var all: [AutoscaleEvent] { list.withLock { $0 } }
}

@Suite struct AutoscalerTests {
    let clock = ManualClock()
    let stack = AutoscaleFakeStack(count: 2)
    let cpu = AutoscaleFakeCPU()
    let probe = AutoscaleFakeProbe()
    let metrics = TestMetrics()
    let events = EventList()

    func autoscaler(failuresBeforeReplace: Int = 2) -> Autoscaler<ManualClock> {
        let events = self.events
        return Autoscaler(
            stack: stack, cpu: cpu, readiness: probe,
            policy: ScalingConfiguration(
                minInstances: 2, maxInstances: 3, scaleUpAbove: 0.5, scaleUpAfter: .seconds(20), scaleDownBelow: 0.1,
                scaleDownAfter: .seconds(30), cooldown: .seconds(10), maximumSampleGap: .seconds(30)),
            failuresBeforeReplace: failuresBeforeReplace,
            timing: .init(interval: .seconds(10), superviseInterval: .seconds(10)), clock: clock,
            metrics: SomaMetrics(factory: metrics), logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }),
            events: { event in events.append(event) })
    }

    /// `count` rounds, ten seconds apart.
    func ticks(_ scaler: Autoscaler<ManualClock>, _ count: Int) async {
        for _ in 0..<count {
            await scaler.tick()
            clock.advance(by: .seconds(10))
        }
    }

    @Test func highCPUScalesTheStackUpAndReportsIt() async throws {
        let scaler = autoscaler()
        cpu.values.withLock { $0 = ["soma-1": 0.8, "soma-2": 0.6] }
        await ticks(scaler, 2)  // 0 s, 10 s: pending
        #expect(stack.state.withLock { $0.scaledTo }.isEmpty)
        await ticks(scaler, 1)  // 20 s: the window has lasted 20 s
        #expect(stack.state.withLock { $0.scaledTo } == [3])
        let scaled = events.all.compactMap { event -> Int? in
            if case .scaled(let from, let to, let reason, _, _) = event, reason == "cpu_high" { return from * 10 + to }
            return nil
        }
        #expect(scaled == [23])
        #expect(try metrics.expectGauge("soma_autoscale_desired_instances").lastValue == 3)
        #expect(try metrics.expectCounter("soma_autoscale_decisions_total", [("reason", "pending")]).totalValue == 2)
        #expect(try metrics.expectCounter("soma_autoscale_decisions_total", [("reason", "cpu_high")]).totalValue == 1)
        #expect(try metrics.expectGauge("soma_autoscale_max_instances").lastValue == 3)
    }

    @Test func aStaleSeriesOfAnInstanceNotInTheStackIsNotLoad() async {
        let scaler = autoscaler()
        // soma-9 was scaled away; its last rate is still in Prometheus for a while.
        cpu.values.withLock { $0 = ["soma-1": 0.05, "soma-2": 0.05, "soma-9": 5.0] }
        await ticks(scaler, 5)
        #expect(stack.state.withLock { $0.scaledTo }.isEmpty)
        let means = events.all.compactMap { event -> Double? in
            if case .observed(_, let mean, _, _) = event { return mean }
            return nil
        }
        #expect(means.allSatisfy { $0 == 0.05 })
    }

    @Test func aDeadInstanceIsReplacedAndAFailingOneAfterItsRun() async {
        let scaler = autoscaler(failuresBeforeReplace: 2)
        probe.probes.withLock { $0 = ["soma-1": .unreachable("refused"), "soma-2": .failing("503")] }
        await ticks(scaler, 1)
        #expect(stack.state.withLock { $0.replaced } == ["soma-1"])
        await ticks(scaler, 1)
        #expect(stack.state.withLock { $0.replaced } == ["soma-1", "soma-1", "soma-2"])
        #expect((try? metrics.expectCounter("soma_autoscale_replacements_total").totalValue) == 3)
    }

    @Test func aFailedScaleIsReportedAndTheLoopGoesOn() async {
        let scaler = autoscaler()
        stack.state.withLock { $0.failScale = true }
        cpu.values.withLock { $0 = ["soma-1": 0.9, "soma-2": 0.9] }
        await ticks(scaler, 3)
        let failures = events.all.filter { if case .failed = $0 { true } else { false } }
        #expect(failures.count == 1)
        stack.state.withLock { $0.failScale = false }
        // The count did not change, so the policy starts over: cooldown, then a whole window again.
        await ticks(scaler, 4)
        #expect(stack.state.withLock { $0.scaledTo } == [3])
    }

    @Test func belowTheMinimumIsCorrectedWithoutAWindow() async {
        let scaler = autoscaler()
        stack.state.withLock { _ = $0.instances.removeLast() }
        await ticks(scaler, 1)
        #expect(stack.state.withLock { $0.scaledTo } == [2])
    }
}
