import Foundation
import NIOHTTP1
import Testing

/// How fast entries go through the service into PostgreSQL, and how fast the outbox replays a
/// backlog. Prints its numbers (make test shows them); asserts only that nothing is lost.
@Suite("PostgreSQL: throughput", .requiresPostgres, .serialized, .timeLimit(.minutes(3)))
struct PostgresThroughputTests {
    @Test func entriesPerSecondAndReplaySpeed() async throws {
        let postgres = try await PostgresHarness.start()
        let soma = try await SomaProcess.start(instance: "tp", environment: PostgresServiceTests.environment(postgres))
        let clock = ContinuousClock()
        func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18 }
        func postMany(_ count: Int, tag: String, concurrency: Int = 8) async throws -> [HTTPResponseStatus: Int] {
            try await withThrowingTaskGroup(of: [HTTPResponseStatus: Int].self) { group in
                for worker in 0..<concurrency {
                    group.addTask {
                        var statuses: [HTTPResponseStatus: Int] = [:]
                        for i in stride(from: worker, to: count, by: concurrency) {
                            let reply = try await soma.request(
                                "POST", "/v1/entries", json: #"{"text": "\#(tag) \#(i): we kept going because the team believed in the plan."}"#,
                                headers: [("X-User-Id", "tp-\(i % 50)")])
                            statuses[reply.status, default: 0] += 1
                        }
                        return statuses
                    }
                }
                return try await group.reduce(into: [:]) { total, part in total.merge(part, uniquingKeysWith: +) }
            }
        }

        var t = clock.now
        let direct = try await postMany(1000, tag: "direct")
        let directSeconds = seconds(clock.now - t)
        #expect(direct[.created] == 1000)

        try await postgres.stop()
        let queued = try await postMany(1000, tag: "queued")
        #expect(queued[.accepted] == 1000)
        t = clock.now
        try await postgres.restart()
        var pending = Double.infinity
        var firstReplayed: ContinuousClock.Instant?
        while pending > 0, clock.now - t < .seconds(120) {
            pending = try await soma.metric("soma_outbox_pending") ?? .infinity
            if firstReplayed == nil, pending < 1000 { firstReplayed = clock.now }
            if pending > 0 { try await Task.sleep(for: .milliseconds(20)) }
        }
        let drained = clock.now
        #expect(pending == 0)
        let start = firstReplayed ?? drained
        print(
            String(
                format:
                    "postgres: 1000 entries through the service (8 clients, five analyses each, debug build) in %.2f s = %.0f entries/s; outbox: replay began %.2f s after the restart (breaker wait and replayer back-off), then 1000 entries in %.2f s = %.0f entries/s",
                directSeconds, 1000 / directSeconds, seconds(start - t), seconds(drained - start), 1000 / max(0.001, seconds(drained - start))))
        #expect(await soma.stop() == 0)
        await postgres.shutdown()
    }
}
