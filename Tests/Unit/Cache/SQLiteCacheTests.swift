import Foundation
import Soma
import Synchronization
import Testing

/// A wall clock that stands still until a test moves it; starts on a whole millisecond.
private final class SQLiteCacheTestTime: Sendable {
    private let date = Mutex(UnixMilliseconds.date(1_717_171_717_000))

    /// The closure `SQLiteCache(path:maxBytes:now:)` reads.
    var now: @Sendable () -> Date {
        { [self] in date.withLock { $0 } }
    }

    func advance(by duration: Duration) {
        let (seconds, attoseconds) = duration.components
        date.withLock { $0 += Double(seconds) + Double(attoseconds) * 1e-18 }
    }
}

/// A unique scratch directory under the system temporary directory, removed by `remove()`.
private struct SQLiteCacheTestDirectory {
    let url: URL

    init() throws {
        url = FileManager.default.temporaryDirectory
            .appendingPathComponent("soma-sqlitecache-tests-\(UUID().uuidString)", isDirectory: true)
    }

    /// The cache file, one directory level down so that `init` has to create its parent.
    var cachePath: String { url.appendingPathComponent("state/cache.sqlite").path }

    func remove() { try? FileManager.default.removeItem(at: url) }
}

@Suite(.timeLimit(.minutes(1)))
struct SQLiteCacheTests {
    /// Runs `body` with a fresh cache in a fresh directory (removed afterwards) and its clock.
    private func withCache(
        maxBytes: Int = 256 << 20,
        _ body: (SQLiteCache, SQLiteCacheTestTime, SQLiteCacheTestDirectory) async throws -> Void
    ) async throws {
        let directory = try SQLiteCacheTestDirectory()
        defer { directory.remove() }
        let time = SQLiteCacheTestTime()
        let cache = try SQLiteCache(path: directory.cachePath, maxBytes: maxBytes, now: time.now)
        try await body(cache, time, directory)
    }

    private static func analysisKey(_ text: String, module: Module = .emotion) -> CacheKey {
        CacheKey.analysis(module: module, modelVersion: "m1", normalizedText: text)
    }

    /// What a row counts against `maxBytes`: its key's UTF-8 bytes plus its value.
    private static func size(_ key: CacheKey, _ value: [UInt8]) -> Int {
        key.description.utf8.count + value.count
    }

    // MARK: - Values

    @Test func roundTripsBinaryValuesForAnalysisAndUserKeys() async throws {
        try await withCache { cache, _, directory in
            #expect(cache.layer == "fallback")
            #expect(FileManager.default.fileExists(atPath: directory.cachePath))
            var random = SystemRandomNumberGenerator()
            let entries: [(key: CacheKey, value: [UInt8])] = [
                (Self.analysisKey("nul"), [0, 0, 0]),
                (Self.analysisKey("empty"), []),
                (Self.analysisKey("mixed", module: .theoryOfMind), [0xFF, 0xFE, 0x00, 0x01, 0x80, 0xC3, 0x28, 0x00]),
                (Self.analysisKey("every byte", module: .narrative), (0...255).map { UInt8($0) }),
                (Self.analysisKey("large", module: .values), (0..<100_000).map { _ in UInt8.random(in: 0...255, using: &random) }),
                (CacheKey.user("alice", "profile"), Array(#"{"name":"Алиса 🙂","x":"\u0000"}"#.utf8) + [0]),
                (CacheKey.user("a:b%c", "profile"), [0]),
            ]
            try await cache.set(entries, ttl: .seconds(60))
            let values = try await cache.get(entries.map(\.key))
            #expect(values.count == entries.count)
            for (entry, value) in zip(entries, values) {
                #expect(value == entry.value, "\(entry.key)")
            }
            #expect(cache.count == entries.count)
            #expect(cache.totalBytes == entries.reduce(0) { $0 + Self.size($1.key, $1.value) })
        }
    }

    @Test func overwritingAKeyReplacesItsValueAndSize() async throws {
        try await withCache { cache, _, _ in
            let key = CacheKey.user("bob", "profile")
            try await cache.set([(key, [1, 2, 3, 4, 5, 6, 7, 8])], ttl: .seconds(60))
            try await cache.set([(key, [9])], ttl: .seconds(60))
            #expect(try await cache.get([key]) == [[9]])
            #expect(cache.count == 1)
            #expect(cache.totalBytes == Self.size(key, [9]))
            // The last of two writes of one key in a batch wins.
            try await cache.set([(key, [1]), (key, [2, 2])], ttl: .seconds(60))
            #expect(try await cache.get([key]) == [[2, 2]])
            #expect(cache.count == 1)
            #expect(cache.totalBytes == Self.size(key, [2, 2]))
        }
    }

    @Test func batchedGetReturnsOneElementPerKeyInOrder() async throws {
        try await withCache { cache, _, _ in
            let a = Self.analysisKey("a")
            let b = Self.analysisKey("b")
            let c = Self.analysisKey("c")
            let profile = CacheKey.user("carol", "profile")
            try await cache.set([(a, [1]), (c, [3]), (profile, [4])], ttl: .seconds(60))
            let values = try await cache.get([c, b, profile, a, b, a])
            #expect(values == [[3], nil, [4], [1], nil, [1]])
            #expect(try await cache.get([]).isEmpty)
            #expect(try await cache.get([b]) == [nil])
        }
    }

    @Test func thousandKeysInOneGet() async throws {
        try await withCache { cache, _, _ in
            let keys = (0..<1_000).map { Self.analysisKey("text \($0)") }
            let stored = keys.enumerated().filter { $0.offset % 3 != 0 }
            try await cache.set(stored.map { (key: $0.element, value: Array("value \($0.offset)".utf8)) }, ttl: .seconds(60))
            #expect(cache.count == stored.count)
            let values = try await cache.get(keys)
            #expect(values.count == 1_000)
            for (index, value) in values.enumerated() {
                #expect(value == (index % 3 == 0 ? nil : Array("value \(index)".utf8)), "key \(index)")
            }
        }
    }

    // MARK: - Expiry

    @Test func entriesExpireAfterTheirTTL() async throws {
        try await withCache { cache, time, _ in
            let short = Self.analysisKey("short")
            let long = Self.analysisKey("long")
            try await cache.set([(short, [1])], ttl: .seconds(10))
            try await cache.set([(long, [2])], ttl: .seconds(100))
            time.advance(by: .milliseconds(9_999))
            #expect(try await cache.get([short, long]) == [[1], [2]])
            time.advance(by: .milliseconds(1))
            #expect(try await cache.get([short, long]) == [nil, [2]])
            // The expired row met by `get` was deleted on the way.
            #expect(cache.count == 1)
            #expect(cache.totalBytes == Self.size(long, [2]))
            time.advance(by: .seconds(90))
            #expect(try await cache.get([long]) == [nil])
            #expect(cache.count == 0)
            #expect(cache.totalBytes == 0)
        }
    }

    @Test func purgeExpiredDeletesOnlyExpiredRows() async throws {
        try await withCache { cache, time, _ in
            let keys = (0..<10).map { Self.analysisKey("purge \($0)") }
            try await cache.set(keys[..<6].map { ($0, [7, 7]) }, ttl: .seconds(5))
            try await cache.set(keys[6...].map { ($0, [8]) }, ttl: .seconds(50))
            #expect(try cache.purgeExpired() == 0)
            time.advance(by: .seconds(5))
            // Expired rows still count until something deletes them.
            #expect(cache.count == 10)
            #expect(try cache.purgeExpired() == 6)
            #expect(cache.count == 4)
            #expect(cache.totalBytes == keys[6...].reduce(0) { $0 + Self.size($1, [8]) })
            #expect(try await cache.get(keys).compactMap { $0 }.count == 4)
            #expect(try cache.purgeExpired() == 0)
        }
    }

    @Test func nonPositiveTTLStoresNothingAndDropsTheOldValue() async throws {
        try await withCache { cache, _, _ in
            let key = Self.analysisKey("ttl")
            try await cache.set([(key, [1])], ttl: .seconds(60))
            try await cache.set([(key, [2])], ttl: .zero)
            #expect(try await cache.get([key]) == [nil])
            #expect(cache.count == 0)
            #expect(cache.totalBytes == 0)
        }
    }

    @Test func anInjectedClockIsMappedOntoTheWallClock() async throws {
        let directory = try SQLiteCacheTestDirectory()
        defer { directory.remove() }
        let clock = ManualClock()
        let cache = try SQLiteCache(path: directory.cachePath, clock: clock)
        let key = Self.analysisKey("clock")
        try await cache.set([(key, [1])], ttl: .seconds(5))
        clock.advance(by: .milliseconds(4_900))
        #expect(try await cache.get([key]) == [[1]])
        clock.advance(by: .milliseconds(200))
        #expect(try await cache.get([key]) == [nil])
    }

    // MARK: - Delete

    @Test func deleteReturnsHowManyExisted() async throws {
        try await withCache { cache, time, _ in
            let a = Self.analysisKey("a")
            let b = Self.analysisKey("b")
            let missing = Self.analysisKey("missing")
            let stale = Self.analysisKey("stale")
            try await cache.set([(stale, [0])], ttl: .seconds(1))
            time.advance(by: .seconds(2))
            try await cache.set([(a, [1]), (b, [2])], ttl: .seconds(60))
            #expect(try await cache.delete([a, missing, b, a, stale]) == 2)
            #expect(try await cache.get([a, b]) == [nil, nil])
            #expect(cache.count == 0)
            #expect(cache.totalBytes == 0)
            #expect(try await cache.delete([a]) == 0)
            #expect(try await cache.delete([]) == 0)
        }
    }

    @Test func deleteUserEntriesRemovesTheProfileAndNothingElse() async throws {
        try await withCache { cache, _, _ in
            let aliceProfile = CacheKey.user("alice", "profile")
            let aliceOther = CacheKey.user("alice", "notes")
            let bobProfile = CacheKey.user("bob", "profile")
            let prefixedProfile = CacheKey.user("alice2", "profile")
            let analysis = Self.analysisKey("alice")
            let all = [aliceProfile, aliceOther, bobProfile, prefixedProfile, analysis]
            try await cache.set(all.map { ($0, Array($0.description.utf8)) }, ttl: .seconds(60))
            #expect(try await cache.deleteUserEntries(UserTag("alice")) == 1)
            let values = try await cache.get(all)
            #expect(values[0] == nil)
            for (key, value) in zip(all, values).dropFirst() {
                #expect(value == Array(key.description.utf8), "\(key)")
            }
            #expect(cache.count == all.count - 1)
            #expect(try await cache.deleteUserEntries(UserTag("alice")) == 0)
        }
    }

    // MARK: - Eviction

    @Test func evictsTheLeastRecentlyUsedEntriesDownToNinetyPercent() async throws {
        let value = [UInt8](repeating: 0xAB, count: 100)
        let keys = (0...10).map { Self.analysisKey("lru \($0)") }
        let entrySize = Self.size(keys[0], value)
        #expect(keys.allSatisfy { Self.size($0, value) == entrySize })
        // Room for exactly ten entries; 90% of it holds nine.
        let maxBytes = entrySize * 10
        try await withCache(maxBytes: maxBytes) { cache, _, _ in
            for key in keys[..<10] {
                try await cache.set([(key, value)], ttl: .seconds(60))
            }
            #expect(cache.count == 10)
            #expect(cache.totalBytes == maxBytes)
            // Reading key 0 makes it the most recently used; keys 1 and 2 are now the oldest.
            #expect(try await cache.get([keys[0]]) == [value])
            try await cache.set([(keys[10], value)], ttl: .seconds(60))
            #expect(cache.count == 9)
            #expect(cache.totalBytes == entrySize * 9)
            #expect(cache.totalBytes <= maxBytes * 9 / 10)
            let values = try await cache.get(keys)
            #expect(values[1] == nil)
            #expect(values[2] == nil)
            for index in [0] + Array(3...10) {
                #expect(values[index] == value, "key \(index) should have survived")
            }
        }
    }

    @Test func totalStaysUnderTheBudgetUnderChurn() async throws {
        let maxBytes = 20_000
        try await withCache(maxBytes: maxBytes) { cache, _, directory in
            var random = SystemRandomNumberGenerator()
            let hot = Self.analysisKey("hot")
            try await cache.set([(hot, [1])], ttl: .seconds(600))
            for round in 0..<200 {
                let batch = (0..<Int.random(in: 1...5, using: &random)).map { index in
                    (key: Self.analysisKey("churn \(round) \(index)"), value: [UInt8](repeating: UInt8(index), count: Int.random(in: 0...900, using: &random)))
                }
                try await cache.set(batch, ttl: .seconds(600))
                #expect(cache.totalBytes <= maxBytes)
                // Kept hot by a read every round, it is never the least recently used.
                #expect(try await cache.get([hot]) == [[1]], "round \(round)")
            }
            #expect(cache.totalBytes > 0)
            // The running total matches what is in the file.
            let (total, count) = (cache.totalBytes, cache.count)
            let reopened = try SQLiteCache(path: directory.cachePath, maxBytes: maxBytes, now: { Date() })
            #expect(reopened.totalBytes == total)
            #expect(reopened.count == count)
        }
    }

    @Test func expiredEntriesAreEvictedBeforeLiveOnes() async throws {
        let value = [UInt8](repeating: 1, count: 100)
        let keys = (0..<11).map { Self.analysisKey("expire-first \($0)") }
        let maxBytes = Self.size(keys[0], value) * 10
        try await withCache(maxBytes: maxBytes) { cache, time, _ in
            // Keys 0…4 are the oldest but live long; keys 5…9 are newer but expire first.
            try await cache.set(keys[0..<5].map { ($0, value) }, ttl: .seconds(600))
            try await cache.set(keys[5..<10].map { ($0, value) }, ttl: .seconds(10))
            time.advance(by: .seconds(20))
            try await cache.set([(keys[10], value)], ttl: .seconds(600))
            #expect(cache.count == 6)
            let values = try await cache.get(keys)
            #expect(values.filter { $0 != nil }.count == 6)
            #expect(values[0..<5].allSatisfy { $0 == value })
            #expect(values[10] == value)
        }
    }

    @Test func anEntryLargerThanTheBudgetIsNotCachedAndEvictsNothing() async throws {
        try await withCache(maxBytes: 1_000) { cache, _, _ in
            let small = Self.analysisKey("small")
            let big = Self.analysisKey("big")
            try await cache.set([(small, [1]), (big, [2])], ttl: .seconds(60))
            try await cache.set([(big, [UInt8](repeating: 0, count: 2_000))], ttl: .seconds(60))
            // The old value of `big` must not be served in place of the new one.
            #expect(try await cache.get([small, big]) == [[1], nil])
            #expect(cache.count == 1)
            #expect(cache.totalBytes == Self.size(small, [1]))
        }
    }

    // MARK: - Persistence and concurrency

    @Test func survivesReopening() async throws {
        let directory = try SQLiteCacheTestDirectory()
        defer { directory.remove() }
        let time = SQLiteCacheTestTime()
        let entries: [(key: CacheKey, value: [UInt8])] =
            (0..<20).map {
                (key: Self.analysisKey("persist \($0)"), value: [UInt8(truncatingIfNeeded: $0), 0, 0xFF])
            } + [(key: CacheKey.user("dora", "profile"), value: [])]
        let expected = entries.reduce(0) { $0 + Self.size($1.key, $1.value) }
        do {
            let cache = try SQLiteCache(path: directory.cachePath, maxBytes: 1 << 20, now: time.now)
            try await cache.set(entries, ttl: .seconds(3_600))
            #expect(cache.totalBytes == expected)
        }
        let reopened = try SQLiteCache(path: directory.cachePath, maxBytes: 1 << 20, now: time.now)
        #expect(reopened.totalBytes == expected)
        #expect(reopened.count == entries.count)
        #expect(try await reopened.get(entries.map(\.key)) == entries.map(\.value))
        // Expiry is on the wall clock, so it carries over too.
        time.advance(by: .seconds(3_600))
        #expect(try await reopened.get([entries[0].key]) == [nil])
        #expect(try reopened.purgeExpired() == entries.count - 1)
        #expect(reopened.totalBytes == 0)
    }

    @Test func recencySurvivesReopening() async throws {
        let directory = try SQLiteCacheTestDirectory()
        defer { directory.remove() }
        let time = SQLiteCacheTestTime()
        let value = [UInt8](repeating: 7, count: 50)
        let keys = (0..<5).map { Self.analysisKey("recency \($0)") }
        let maxBytes = Self.size(keys[0], value) * 4
        do {
            let cache = try SQLiteCache(path: directory.cachePath, maxBytes: maxBytes, now: time.now)
            for key in keys[..<4] {
                try await cache.set([(key, value)], ttl: .seconds(60))
            }
            #expect(try await cache.get([keys[0]]) == [value])
        }
        // Same millisecond after the restart: stamps still increase, so key 0 stays the newest use.
        let reopened = try SQLiteCache(path: directory.cachePath, maxBytes: maxBytes, now: time.now)
        try await reopened.set([(keys[4], value)], ttl: .seconds(60))
        let values = try await reopened.get(keys)
        #expect(values[0] == value)
        #expect(values[1] == nil)
        #expect(values[4] == value)
    }

    @Test func concurrentUseFromEightTasks() async throws {
        try await withCache { cache, _, _ in
            try await withThrowingTaskGroup(of: Void.self) { group in
                for task in 0..<8 {
                    group.addTask {
                        for round in 0..<25 {
                            let batch = (0..<4).map { index in
                                (key: Self.analysisKey("task \(task) round \(round) item \(index)"), value: [UInt8(task), UInt8(round), UInt8(index), 0])
                            }
                            try await cache.set(batch, ttl: .seconds(60))
                            let values = try await cache.get(batch.map(\.key))
                            #expect(values == batch.map(\.value))
                            if round % 5 == 0 {
                                let shared = CacheKey.user("shared", "profile")
                                try await cache.set([(shared, [UInt8(task)])], ttl: .seconds(60))
                                _ = try await cache.get([shared])
                            }
                        }
                    }
                }
                try await group.waitForAll()
            }
            let keys = (0..<8).flatMap { task in
                (0..<25).flatMap { round in
                    (0..<4).map { Self.analysisKey("task \(task) round \(round) item \($0)") }
                }
            }
            let values = try await cache.get(keys)
            #expect(values.allSatisfy { $0 != nil })
            #expect(cache.count == keys.count + 1)
            #expect(try await cache.get([CacheKey.user("shared", "profile")]).first??.count == 1)
        }
    }
}
