import Foundation
import NIOHTTP1
import Soma
import SomaLoad
import Testing

/// `soma serve` processes over a real PostgreSQL: entries survive an outage through the outbox,
/// exactly once and in order; isolation and erase through every route; migrations from two
/// processes at once.
@Suite("PostgreSQL: service", .requiresPostgres, .serialized, .timeLimit(.minutes(4)))
struct PostgresServiceTests {
    static func environment(_ postgres: PostgresHarness, _ extra: [String: String] = [:]) -> [String: String] {
        var env = [
            "DATABASE_URL": postgres.url, "SOMA_DB_TIMEOUT_MS": "1000",
            "SOMA_DB_BREAKER_WAIT_MS": "500", "SOMA_DB_BREAKER_MIN_CALLS": "4", "SOMA_DB_BREAKER_WINDOW": "8",
            "SOMA_TIER_STANDARD_RPM": "100000",
        ]
        for (k, v) in extra { env[k] = v }
        return env
    }

    /// Every entry of `user`, newest first, through the paginated route.
    static func allEntries(_ instance: SomaProcess, user: String, token: String? = nil) async throws -> [[String: Any]] {
        var all: [[String: Any]] = []
        var cursor: String?
        repeat {
            let path = "/v1/entries?limit=200" + (cursor.map { "&cursor=\($0)" } ?? "")
            let page = try await instance.request("GET", path, headers: [("X-User-Id", user)] + (token.map { [("Authorization", "Bearer \($0)")] } ?? []))
            #expect(page.status == .ok, "\(page.text)")
            all += page.json["entries"] as? [[String: Any]] ?? []
            cursor = page.json["next_cursor"] as? String
        } while cursor != nil
        return all
    }

    @Test func fiveHundredEntriesThroughAnOutageArriveExactlyOnceInOrder() async throws {
        let postgres = try await PostgresHarness.start()
        let soma = try await SomaProcess.start(instance: "pg", environment: Self.environment(postgres))
        let users = (0..<5).map { "writer-\($0)-\(UUID().uuidString.prefix(6))" }
        var acknowledged: [String: [String]] = [:]  // user → entry ids in acknowledgement order
        var statuses: [HTTPResponseStatus: Int] = [:]
        let ledger = WriteLedger()
        func post(_ i: Int, key: String? = nil) async throws -> String? {
            let user = users[i % users.count]
            var headers = [("X-User-Id", user)]
            if let key { headers.append(("Idempotency-Key", key)) }
            let sent = ledger.now()
            let reply = try await soma.request(
                "POST", "/v1/entries", json: #"{"text": "Entry \#(i): I hoped the work would matter, because family depends on it."}"#, headers: headers)
            statuses[reply.status, default: 0] += 1
            ledger.record(
                WriteRecord(
                    user: user, key: key ?? "write-\(i)", entryID: (reply.json["entry"] as? [String: Any])?["id"] as? String,
                    status: Int(reply.status.code), instance: reply.headers.first(name: "Soma-Instance"),
                    sentMicros: sent, answeredMicros: ledger.now()))
            guard reply.status == .created || reply.status == .accepted else {
                Issue.record("entry \(i) answered \(reply.status): \(reply.text)")
                return nil
            }
            let id = (reply.json["entry"] as? [String: Any])?["id"] as? String
            if let id, key == nil || acknowledged[user]?.contains(id) != true { acknowledged[user, default: []].append(id) }
            return id
        }

        for i in 0..<100 { _ = try await post(i) }
        try await postgres.stop()
        for i in 100..<400 { _ = try await post(i) }
        // A retried write during the outage (same Idempotency-Key) is one entry.
        let first = try await post(400, key: "retry-me")
        let again = try await post(400, key: "retry-me")
        #expect(first != nil && first == again)
        #expect((try await soma.metric("soma_outbox_pending") ?? 0) >= 250, "the outbox holds the outage's writes")
        // Probes (as a load balancer sends them) fail against the stopped database and open the breaker.
        for _ in 0..<4 {
            let health = try await soma.request("GET", "/health").json
            #expect(health["status"] as? String == "degraded")
        }
        #expect((try await soma.metric(#"soma_circuit_transitions_total{dependency="postgres",to="open"}"#) ?? 0) >= 1)
        #expect(try await soma.request("GET", "/ready").status == .ok, "PostgreSQL never makes an instance unready")
        #expect(try await soma.metric("soma_instance_status") == 1, "degraded, as /health says")
        try await postgres.restart()
        for i in 401..<500 { _ = try await post(i) }

        // The replayer drains the outbox once PostgreSQL answers.
        var pending = Double.infinity
        for _ in 0..<300 where pending > 0 {
            pending = try await soma.metric("soma_outbox_pending") ?? .infinity
            if pending > 0 { try await Task.sleep(for: .milliseconds(100)) }
        }
        #expect(pending == 0)
        var status: Double? = nil
        for _ in 0..<100 where status != 2 {  // the breaker's half-open trial closes it
            status = try await soma.metric("soma_instance_status")
            if status != 2 { try await Task.sleep(for: .milliseconds(100)) }
        }
        #expect(status == 2, "ok again once PostgreSQL answers")
        #expect((statuses[.accepted] ?? 0) >= 250 && (statuses[.created] ?? 0) >= 100, "\(statuses)")

        var total = 0
        for user in users {
            let stored = try await Self.allEntries(soma, user: user)
            let ids = stored.compactMap { $0["id"] as? String }
            total += ids.count
            #expect(Set(ids).count == ids.count, "no entry twice")
            #expect(Set(ids) == Set(acknowledged[user] ?? []), "every acknowledged entry, once, for \(user)")
        }
        #expect(total == 500)
        // The order the database received them in (not the listing's, which acknowledgement time sets).
        let client = try PostgresClient(url: postgres.url, poolSize: 1)
        defer { client.close() }
        var rows: [ReceivedEntry] = []
        for user in users {
            rows += try await PostgresStore(client: client).receivedOrder(user: user).map { ReceivedEntry(id: $0.id, user: user, received: $0.received) }
        }
        let audit = WriteAudit(writes: ledger.all, received: rows)
        #expect(audit.passed && audit.acknowledged == 500 && audit.orderedPairs >= 20_000, "\(audit)")
        #expect(ledger.all.allSatisfy { $0.instance == "pg" }, "Soma-Instance names the instance")
        #expect(await soma.stop() == 0)
        await postgres.shutdown()
    }

    /// A hung PostgreSQL (paused: connections open, nothing answered) holds neither the health probe
    /// (which every /metrics scrape runs) nor a listing past its bound: with a 4 s driver timeout,
    /// /health, /metrics and a listing with a 500 ms deadline all answer within 2.5 s (before the
    /// bounds: 4 s or more each). Generous against a busy machine; the gap is the driver timeout.
    @Test func aHungDatabaseHoldsNeitherHealthNorReadsPastTheirBounds() async throws {
        let postgres = try await PostgresHarness.start()
        let soma = try await SomaProcess.start(instance: "pg-hung", environment: Self.environment(postgres, ["SOMA_DB_TIMEOUT_MS": "4000"]))
        let user = [("X-User-Id", "hung-reader")]
        #expect(try await soma.request("POST", "/v1/entries", json: #"{"text": "Stored before the database froze."}"#, headers: user).status == .created)
        try postgres.pause()
        let clock = ContinuousClock()
        var timings: [String: Duration] = [:]
        do {
            var start = clock.now
            let health = try await soma.request("GET", "/health")
            timings["health"] = clock.now - start
            #expect(health.status == .ok)
            start = clock.now
            #expect(try await soma.request("GET", "/metrics").status == .ok)
            timings["metrics"] = clock.now - start
            start = clock.now
            let listing = try await soma.request("GET", "/v1/entries", headers: user + [("X-Request-Deadline-Ms", "500")])
            timings["listing"] = clock.now - start
            #expect(listing.status == .serviceUnavailable, "\(listing.text)")
        } catch {
            try postgres.resume()
            throw error
        }
        try postgres.resume()
        for (what, took) in timings { #expect(took < .milliseconds(2500), "\(what) took \(took) against a hung database") }
        #expect(await soma.stop() == 0)
        await postgres.shutdown()
    }

    /// An instance whose state directory outlives a re-pointed `DATABASE_URL` keeps what it queued
    /// for the old database, says so, and replays it only into that database.
    @Test func entriesQueuedForOneDatabaseAreNeverReplayedIntoAnother() async throws {
        let postgres = try await PostgresHarness.start()
        let admin = try PostgresClient(url: postgres.url, poolSize: 1)
        _ = try await admin.query("CREATE DATABASE elsewhere")
        admin.close()
        let elsewhere = String(postgres.url.dropLast("soma".count)) + "elsewhere"
        let state = FileManager.default.temporaryDirectory.appendingPathComponent("soma-it-repoint-\(UUID().uuidString)", isDirectory: true)
        defer { try? FileManager.default.removeItem(at: state) }
        let user = [("X-User-Id", "repointed")]
        func count(_ url: String) async throws -> Int64 {
            let client = try PostgresClient(url: url, poolSize: 1)
            defer { client.close() }
            return try await client.query("SELECT count(*) FROM entries WHERE user_id = 'repointed'").rows.first?.int64(0) ?? -1
        }
        func poll(_ instance: SomaProcess, _ metric: String, until value: Double) async throws -> Double? {
            var seen: Double?
            for _ in 0..<100 {
                seen = try await instance.metric(metric)
                if seen == value { break }
                try await Task.sleep(for: .milliseconds(100))
            }
            return seen
        }

        let first = try await SomaProcess.start(instance: "repoint", environment: Self.environment(postgres), stateDirectory: state)
        try await postgres.stop()
        for i in 0..<10 {
            let reply = try await first.request("POST", "/v1/entries", json: #"{"text": "Queued \#(i) for the first database."}"#, headers: user)
            #expect(reply.status == .accepted, "\(reply.text)")
        }
        #expect(await first.stop(keepingState: true) == 0)
        try await postgres.restart()

        // Restarted on the same state directory, pointed at another database.
        let second = try await SomaProcess.start(
            instance: "repoint", environment: Self.environment(postgres, ["DATABASE_URL": elsewhere]), stateDirectory: state)
        #expect(try await poll(second, "soma_outbox_held", until: 10) == 10)
        #expect(try await second.metric("soma_outbox_pending") == 0)
        let health = try await second.request("GET", "/health").json
        #expect(health["status"] as? String == "degraded")
        let outbox = (health["dependencies"] as? [String: Any])?["outbox"] as? [String: Any]
        #expect(outbox?["held"] as? Int == 10, "\(outbox ?? [:])")
        #expect((outbox?["detail"] as? String)?.contains("another database") == true)
        #expect(try await second.metric("soma_instance_status") == 1)
        // New writes go to the new database at once; nothing queued for the old one does.
        #expect(try await second.request("POST", "/v1/entries", json: #"{"text": "Written to the second database."}"#, headers: user).status == .created)
        try await Task.sleep(for: .seconds(1))
        #expect(try await count(elsewhere) == 1)
        #expect(await second.stop(keepingState: true) == 0)

        // Pointed back: they replay where they belong.
        let third = try await SomaProcess.start(instance: "repoint", environment: Self.environment(postgres), stateDirectory: state)
        #expect(try await poll(third, "soma_outbox_pending", until: 0) == 0)
        #expect(try await third.metric("soma_outbox_held") == 0)
        #expect(try await count(postgres.url) == 10)
        #expect(try await count(elsewhere) == 1)
        #expect(await third.stop() == 0)
        await postgres.shutdown()
    }

    @Test func nobodyReachesAnotherUsersDataThroughAnyRoute() async throws {
        let postgres = try await PostgresHarness.start()
        let soma = try await SomaProcess.start(instance: "iso", environment: Self.environment(postgres, ["SOMA_SERVICE_TOKEN": "svc"]))
        let alice = [("Authorization", "Bearer svc"), ("X-User-Id", "alice")]
        let mallory = [("Authorization", "Bearer svc"), ("X-User-Id", "mallory")]
        let created = try await soma.request("POST", "/v1/entries", json: #"{"text": "Alice's private thought about her family."}"#, headers: alice)
        #expect(created.status == .created)
        let id = try #require((created.json["entry"] as? [String: Any])?["id"] as? String)

        #expect((try await soma.request("GET", "/v1/entries", headers: mallory).json["entries"] as? [Any])?.isEmpty == true)
        #expect(try await soma.request("DELETE", "/v1/entries/\(id)", headers: mallory).status == .notFound)
        let profile = try await soma.request("GET", "/v1/profile", headers: mallory)
        #expect((profile.json["profile"] as? [String: Any])?["entries"] as? Int == 0)
        let cursorTrick = try await soma.request("GET", "/v1/entries?cursor=" + id, headers: mallory)
        #expect(cursorTrick.status == .badRequest)
        let erase = try await soma.request("DELETE", "/v1/user", headers: mallory)
        #expect((erase.json["erased"] as? [String: Any])?["entries"] as? Int == 0)
        // A user id that looks like SQL is just a user.
        let injection = [("Authorization", "Bearer svc"), ("X-User-Id", "alice' OR '1'='1")]
        #expect((try await soma.request("GET", "/v1/entries", headers: injection).json["entries"] as? [Any])?.isEmpty == true)

        let mine = try await Self.allEntries(soma, user: "alice", token: "svc")
        #expect(mine.count == 1 && mine.first?["id"] as? String == id)
        #expect((try await soma.request("GET", "/v1/profile", headers: alice).json["profile"] as? [String: Any])?["entries"] as? Int == 1)
        let erased = try await soma.request("DELETE", "/v1/user", headers: alice)
        #expect((erased.json["erased"] as? [String: Any])?["entries"] as? Int == 1)
        #expect(try await Self.allEntries(soma, user: "alice", token: "svc").isEmpty)
        #expect(await soma.stop() == 0)
        await postgres.shutdown()
    }

    @Test func twoMigrateProcessesAtOnceBothSucceed() async throws {
        let postgres = try await PostgresHarness.start()
        func migrate() async throws -> Int32 {
            let process = Process()
            process.executableURL = try SomaProcess.binary()
            process.arguments = ["migrate"]
            var env = ProcessInfo.processInfo.environment
            env["DATABASE_URL"] = postgres.url
            process.environment = env
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            while process.isRunning { try await Task.sleep(for: .milliseconds(20)) }
            return process.terminationStatus
        }
        async let a = migrate()
        async let b = migrate()
        let (statusA, statusB) = try await (a, b)
        #expect(statusA == 0 && statusB == 0)
        let again = try await migrate()
        #expect(again == 0)
        await postgres.shutdown()
    }
}
