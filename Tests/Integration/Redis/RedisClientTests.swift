import Foundation
import Soma
import Testing

/// Against real redis-server processes (see `RedisHarness`). Tests that pause, stop or password-protect
/// a server get their own; the rest share one and use distinct key prefixes.
@Suite("RedisClient", .requiresRedis, .timeLimit(.minutes(2)))
struct RedisClientTests {
    /// A client of the shared server. Tests that hold connections with `BLPOP … <seconds>` raise the
    /// command timeout well above that wait (the default 250 ms would race it).
    private func sharedClient(
        poolSize: Int = 4, database: Int = 0, commandTimeout: Duration = .milliseconds(250), clientName: String? = nil
    ) async throws -> RedisClient {
        let server = try await RedisHarness.shared()
        return try RedisClient(
            url: server.url(password: nil, database: database), poolSize: poolSize,
            commandTimeout: commandTimeout, clientName: clientName
        )
    }

    @Test func binaryValuesRoundTripWithNULBytes() async throws {
        let client = try await sharedClient()
        defer { client.close() }
        let prefix = RedisHarness.keyPrefix()
        var random = SystemRandomNumberGenerator()
        let values: [[UInt8]] = [
            [0, 1, 2, 0, 255, 13, 10, 0],
            Array("héllo\r\n$-1\r\n".utf8),
            [],
            (0..<4096).map { _ in UInt8.random(in: 0...255, using: &random) },
        ]
        for (index, value) in values.enumerated() {
            let key: RedisValue = .bytes(Array("\(prefix)\(index)\0key".utf8))  // NUL in the key too
            #expect(try await client.command(["SET", key, .bytes(value)]) == .status("OK"))
            #expect(try await client.command(["GET", key]) == .bulk(value))
            #expect(try await client.command(["STRLEN", key]).int == Int64(value.count))
        }
        #expect(try await client.command(["GET", .string(prefix + "missing")]) == .null)
    }

    @Test func errorRepliesAreReturnedNotThrown() async throws {
        let client = try await sharedClient()
        defer { client.close() }
        let key = RedisValue.string(RedisHarness.keyPrefix() + "list")
        #expect(try await client.command(["NOSUCHCOMMAND", "x"]).errorMessage?.hasPrefix("ERR") == true)
        _ = try await client.command(["RPUSH", key, "a"])
        #expect(try await client.command(["GET", key]).errorMessage?.hasPrefix("WRONGTYPE") == true)
        #expect(try await client.command(["INCRBY", .string(RedisHarness.keyPrefix() + "n"), 41]).int == 41)
        let range = try await client.command(["LRANGE", key, 0, -1])
        #expect(range == .array([.bulk(Array("a".utf8))]))
        await #expect(throws: RedisError.self) { try await client.command([]) }
    }

    @Test func pxExpiryRemovesTheKey() async throws {
        let client = try await sharedClient()
        defer { client.close() }
        let key = RedisValue.string(RedisHarness.keyPrefix() + "ttl")
        #expect(try await client.command(["SET", key, .bytes([1, 2, 3]), "PX", "50"]) == .status("OK"))
        let ttl = try #require(try await client.command(["PTTL", key]).int)
        #expect(ttl <= 50 && ttl != -1, "PTTL \(ttl)")  // -2 when already gone (the suite runs in parallel)
        let deadline = ContinuousClock.now + .seconds(5)
        var reply = try await client.command(["GET", key])
        while reply != .null && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
            reply = try await client.command(["GET", key])
        }
        #expect(reply == .null)
    }

    @Test func pipelineOf100SetsAnd100GetsKeepsOrder() async throws {
        let client = try await sharedClient()
        defer { client.close() }
        let prefix = RedisHarness.keyPrefix()
        let sets: [[RedisValue]] = (0..<100).map { ["SET", .string("\(prefix)\($0)"), .bytes(Array("value-\($0)\0".utf8))] }
        let gets: [[RedisValue]] = (0..<100).map { ["GET", .string("\(prefix)\($0)")] }
        let replies = try await client.pipeline(sets + gets + [["NOSUCHCOMMAND"]])
        #expect(replies.count == 201)
        #expect(replies.prefix(100).allSatisfy { $0 == .status("OK") })
        for index in 0..<100 {
            #expect(replies[100 + index] == .bulk(Array("value-\(index)\0".utf8)))
        }
        #expect(replies[200].errorMessage != nil)  // an error reply in place, not a thrown error
        #expect(try await client.pipeline([]) == [])
        #expect(client.poolStats.openConnections == 1)  // the whole pipeline used one connection
    }

    @Test func evalShaReloadsAfterScriptFlush() async throws {
        // SCRIPT FLUSH on the shared server is harmless to others: evalScript reloads on NOSCRIPT.
        let client = try await sharedClient()
        defer { client.close() }
        let key = RedisValue.string(RedisHarness.keyPrefix() + "counter")
        let script = RedisScript("return {KEYS[1], ARGV[1], redis.call('INCR', KEYS[1])}")
        // The SHA-1 computed in Swift is the one Redis computes.
        #expect(try await client.command(["SCRIPT", "LOAD", .string(script.source)]).string == script.sha1)

        let first = try await client.evalScript(script, keys: [key], args: ["x"])
        #expect(first.array?.count == 3)
        #expect(first.array?[1] == .bulk(Array("x".utf8)))
        #expect(first.array?[2] == .integer(1))

        #expect(try await client.command(["SCRIPT", "FLUSH"]) == .status("OK"))
        #expect(try await client.command(["SCRIPT", "EXISTS", .string(script.sha1)]) == .array([.integer(0)]))
        let second = try await client.evalScript(script, keys: [key], args: ["y"])
        #expect(second.array?[2] == .integer(2))
        #expect(try await client.command(["SCRIPT", "EXISTS", .string(script.sha1)]) == .array([.integer(1)]))

        // Lua errors come back as error replies, including a script that does not compile.
        #expect(try await client.evalScript(RedisScript("return redis.call('NOSUCHCMD')"), keys: [], args: []).errorMessage != nil)
        #expect(try await client.evalScript(RedisScript("this is not lua"), keys: [], args: []).errorMessage != nil)
    }

    @Test func authWithPasswordProtectedServer() async throws {
        let password = "s3cret @/pass"
        let server = try await RedisHarness.start(password: password)
        defer { Task { await server.shutdown() } }

        let good = try RedisClient(url: server.url)
        defer { good.close() }
        try await good.ping()
        #expect(try await good.command(["SET", "k", "v"]) == .status("OK"))

        let withUser = try RedisClient(url: "redis://default:\(password)@127.0.0.1:\(server.port)")
        defer { withUser.close() }
        #expect(try await withUser.command(["GET", "k"]) == .bulk(Array("v".utf8)))

        let wrong = try RedisClient(url: server.url(password: "wrong"))
        defer { wrong.close() }
        let error = await #expect(throws: RedisError.self) { try await wrong.ping() }
        #expect(error?.code == .connect)
        #expect(error?.message.contains("AUTH") == true)
        #expect(wrong.poolStats.openConnections == 0)

        let none = try RedisClient(url: server.url(password: nil))
        defer { none.close() }
        let noAuth = await #expect(throws: RedisError.self) { try await none.ping() }
        #expect(noAuth?.code == .server)
        #expect(try await none.command(["GET", "k"]).errorMessage?.hasPrefix("NOAUTH") == true)
        await server.shutdown()
    }

    @Test func selectsTheDatabaseFromTheURL() async throws {
        let db3 = try await sharedClient(database: 3)
        let db0 = try await sharedClient(database: 0)
        defer { db3.close(); db0.close() }
        let key = RedisValue.string(RedisHarness.keyPrefix() + "where")
        #expect(try await db3.command(["SET", key, "three"]) == .status("OK"))
        #expect(try await db0.command(["GET", key]) == .null)
        #expect(try await db3.command(["GET", key]) == .bulk(Array("three".utf8)))
        let info = try #require(try await db3.command(["CLIENT", "INFO"]).string)
        #expect(info.contains(" db=3 "))
        #expect(try await db3.command(["DEL", key]) == .integer(1))
    }

    @Test func timeoutWhenTheServerIsFrozenThenRecovers() async throws {
        let server = try await RedisHarness.start()
        defer { Task { await server.shutdown() } }
        let client = try RedisClient(url: server.url, poolSize: 1, commandTimeout: .milliseconds(250))
        defer { client.close() }
        try await client.ping()
        #expect(client.poolStats.connectionsCreated == 1)

        try server.pause()
        let started = ContinuousClock.now
        let error = await #expect(throws: RedisError.self) { try await client.command(["GET", "k"]) }
        let elapsed = ContinuousClock.now - started
        try server.resume()
        #expect(error?.code == .timeout)
        #expect(elapsed < .seconds(5), "timed out after \(elapsed)")
        #expect(client.poolStats.openConnections == 0)  // the timed-out connection was discarded

        #expect(try await client.command(["SET", "k", "v"]) == .status("OK"))
        #expect(client.poolStats.connectionsCreated == 2)  // ... and a fresh one made
        await server.shutdown()
    }

    @Test func serverStoppedThenRestartedOnTheSamePort() async throws {
        let server = try await RedisHarness.start()
        defer { Task { await server.shutdown() } }
        let client = try RedisClient(url: server.url, poolSize: 4, commandTimeout: .seconds(2))
        defer { client.close() }
        // Fill the pool: four open connections that all go stale.
        try await withThrowingTaskGroup(of: RedisReply.self) { group in
            for _ in 0..<4 { group.addTask { try await client.command(["BLPOP", "nothing", "0.05"]) } }
            for try await reply in group { #expect(reply == .null) }
        }
        #expect(client.poolStats.openConnections == 4)

        try await server.stop()
        // A large write to a dead peer hits EPIPE: hiredis' write(2) must not kill us with SIGPIPE.
        let big = [UInt8](repeating: 7, count: 8 << 20)
        let down = await #expect(throws: RedisError.self) { try await client.command(["SET", "big", .bytes(big)]) }
        #expect(down?.code == .io || down?.code == .connect)
        let stillDown = await #expect(throws: RedisError.self) { try await client.command(["GET", "k"]) }
        #expect(stillDown?.code == .connect)

        let oldPID = server.pid
        try await server.restart()
        #expect(server.pid != oldPID)
        // One failure marked every idle connection stale: all four callers succeed at once.
        try await withThrowingTaskGroup(of: RedisReply.self) { group in
            for index in 0..<4 { group.addTask { try await client.command(["SET", .string("k\(index)"), "v"]) } }
            for try await reply in group { #expect(reply == .status("OK")) }
        }
        try await client.ping()
        await server.shutdown()
    }

    @Test func fiftyConcurrentCommandsShareFourConnections() async throws {
        let name = "pool" + String(UInt32.random(in: 0...UInt32.max), radix: 36)
        let client = try await sharedClient(poolSize: 4, commandTimeout: .seconds(2), clientName: name)
        defer { client.close() }
        let prefix = RedisHarness.keyPrefix()
        let counter = RedisValue.string(prefix + "count")
        // BLPOP with a 50 ms timeout holds a connection without blocking the (shared) server.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<50 {
                group.addTask {
                    let replies = try await client.pipeline([["BLPOP", .string("\(prefix)empty\(index)"), "0.05"], ["INCR", counter]])
                    #expect(replies.first == .null)
                }
            }
            try await group.waitForAll()
        }
        #expect(try await client.command(["GET", counter]) == .bulk(Array("50".utf8)))
        let stats = client.poolStats
        #expect(stats.peakOpenConnections <= 4)
        #expect(stats.connectionsCreated <= 4)
        #expect(stats.leased == 0 && stats.waiting == 0)

        // Redis agrees: at most four connections carry this client's name.
        let list = try #require(try await client.command(["CLIENT", "LIST"]).string)
        let ours = list.split(separator: "\n").filter { $0.contains(" name=\(name) ") }
        #expect(ours.count >= 1 && ours.count <= 4)
    }

    @Test func cancelledWaiterStopsWaiting() async throws {
        let client = try await sharedClient(poolSize: 1, commandTimeout: .seconds(2))
        defer { client.close() }
        let prefix = RedisHarness.keyPrefix()
        let holder = Task { try await client.command(["BLPOP", .string(prefix + "none"), "0.2"]) }
        while client.poolStats.leased == 0 { try await Task.sleep(for: .milliseconds(1)) }
        let waiter = Task { try await client.command(["PING"]) }
        while client.poolStats.waiting == 0 { try await Task.sleep(for: .milliseconds(1)) }
        waiter.cancel()
        await #expect(throws: CancellationError.self) { try await waiter.value }
        #expect(try await holder.value == .null)
        try await client.ping()
    }

    @Test func closeFailsLaterCalls() async throws {
        let client = try await sharedClient(poolSize: 1)
        try await client.ping()
        client.close()
        client.close()
        let error = await #expect(throws: RedisError.self) { try await client.ping() }
        #expect(error?.code == .closed)
    }

    @Test func connectionRefusedIsAConnectError() async throws {
        // A port nobody listens on: the shared server's port + a stopped private server's would race; use 1.
        let client = try RedisClient(url: "redis://127.0.0.1:1", connectTimeout: .milliseconds(100))
        defer { client.close() }
        let error = await #expect(throws: RedisError.self) { try await client.ping() }
        #expect(error?.code == .connect)
    }
}

/// URL parsing and other pure parts: no server needed.
@Suite("RedisClient URL parsing")
struct RedisClientURLTests {
    struct Case: Sendable, CustomTestStringConvertible {
        var text: String
        var host: String
        var port: Int = 6379
        var username: String?
        var password: String?
        var database: Int = 0
        var testDescription: String { text }
    }

    static let valid: [Case] = [
        Case(text: "redis://localhost", host: "localhost"),
        Case(text: "redis://127.0.0.1:6380", host: "127.0.0.1", port: 6380),
        Case(text: "REDIS://Cache.internal:7000/", host: "Cache.internal", port: 7000),
        Case(text: "redis://127.0.0.1:6379/15", host: "127.0.0.1", database: 15),
        Case(text: "redis://:secret@127.0.0.1:1234/2", host: "127.0.0.1", port: 1234, password: "secret", database: 2),
        Case(text: "redis://alice:secret@h:1", host: "h", port: 1, username: "alice", password: "secret"),
        Case(text: "redis://:p%40ss%3Aw%2Frd@h", host: "h", password: "p@ss:w/rd"),
        Case(text: "redis://:p@ss/w?rd#x@h:2/3", host: "h", port: 2, password: "p@ss/w?rd#x", database: 3),
        Case(text: "redis://:@h", host: "h"),
        Case(text: "redis://[::1]:6390/1", host: "::1", port: 6390, database: 1),
        Case(text: "redis://[fe80::1%25eth0]", host: "fe80::1%eth0"),
        Case(text: "redis://[fe80::1%eth0]:7", host: "fe80::1%eth0", port: 7),
        Case(text: "  redis://my-host_1.example.com:65535\n", host: "my-host_1.example.com", port: 65535),
    ]

    @Test(arguments: valid)
    func parsesValidURLs(_ expected: Case) throws {
        let url = try RedisURL(expected.text)
        #expect(url.host == expected.host)
        #expect(url.port == expected.port)
        #expect(url.username == expected.username)
        #expect(url.password == expected.password)
        #expect(url.database == expected.database)
    }

    static let invalid: [String] = [
        "", "   ", "localhost:6379", "127.0.0.1", "redis:/localhost", "http://localhost:6379",
        "rediss://localhost:6380", "unix:///tmp/redis.sock", "redis://", "redis://:6379",
        "redis://host:", "redis://host:0", "redis://host:65536", "redis://host:-1", "redis://host:12ab",
        "redis://host:99999999999999999999", "redis://host/db", "redis://host/-1", "redis://host/1/2",
        "redis://host/9999999999", "redis://host?db=1", "redis://host#frag", "redis://secret@host",
        "redis://:%zz@host", "redis://user:@host", "redis://[::1", "redis://[::1]x", "redis://[nothex]:1",
        "redis://ho st:1", "redis://hö.st", "redis://host:6379 /1", "redis://[fe80::1%25]", "redis://[fe80::1%e/0]",
    ]

    @Test(arguments: invalid)
    func rejectsInvalidURLs(_ text: String) {
        #expect {
            _ = try RedisURL(text)
        } throws: { error in
            guard let error = error as? RedisError else { return false }
            return error.code == .invalidURL && error.message.contains("Redis URL")
        }
    }

    @Test func errorMessagesAndDescriptionHideThePassword() throws {
        let url = try RedisURL("redis://bob:hunter2@h:1/4")
        #expect(url.description == "redis://bob:***@h:1/4")
        #expect(!String(describing: url).contains("hunter2"))
        do {
            _ = try RedisURL("redis://:hunter2@h:notaport")
            Issue.record("expected an error")
        } catch {
            #expect(error.code == .invalidURL)
            #expect(!error.message.contains("hunter2"))
            #expect(error.message.contains("invalid port"))
        }
        #expect(throws: RedisError.self) { try RedisClient(url: "nope") }
    }

    @Test func scriptSHA1MatchesKnownVectors() {
        #expect(RedisScript("").sha1 == "da39a3ee5e6b4b0d3255bfef95601890afd80709")
        #expect(RedisScript("abc").sha1 == "a9993e364706816aba3e25717850c26c9cd0d89d")
        #expect(
            RedisScript("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq").sha1
                == "84983e441c3bd26ebaae4aa1f95129e5e54670f1")
        #expect(RedisScript(String(repeating: "a", count: 1000)).sha1 == "291e9a6c66994949b57ba5e650361e98fc36b1ba")
    }

    @Test func valuesAndReplyAccessors() {
        let value: RedisValue = "abc"
        #expect(value.wireBytes == Array("abc".utf8))
        let number: RedisValue = 1000
        #expect(number == .string("1000"))
        #expect(RedisValue.integer(-5) == .string("-5"))
        #expect(RedisReply.bulk([104, 105]).string == "hi")
        #expect(RedisReply.status("OK").bytes == Array("OK".utf8))
        #expect(RedisReply.integer(3).int == 3)
        #expect(RedisReply.null.isNull)
        #expect(RedisReply.array([.null]).array == [.null])
        #expect(RedisReply.error("ERR x").errorMessage == "ERR x")
        #expect(RedisReply.error("ERR x").bytes == nil)
    }
}
