import Soma
import Testing

@Suite(.timeLimit(.minutes(1)))
struct L1CacheTests {
    // MARK: CacheKey and SHA-256

    @Suite(.timeLimit(.minutes(1)))
    struct Keys {
        /// FIPS 180-4 example vectors, and lengths around the padding boundaries (55/56 bytes leave
        /// one or two tail blocks, 64 is exactly one block) checked against coreutils `sha256sum`.
        @Test(arguments: [
            ("", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
            ("abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
            (
                "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
                "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
            ),
            (
                "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu",
                "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"
            ),
            ("hello world", "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"),
            ("café 🙂", "b58cfd033d253fc874fd36ba8375290e5b9b473c0daf3c6b3856347dd88f3026"),
            (String(repeating: "a", count: 1), "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb"),
            (String(repeating: "a", count: 55), "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318"),
            (String(repeating: "a", count: 56), "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a"),
            (String(repeating: "a", count: 63), "7d3e74a05d7db15bce4ad9ec0658ea98e3f06eeecf16b4c6fff2da457ddc2f34"),
            (String(repeating: "a", count: 64), "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb"),
            (String(repeating: "a", count: 65), "635361c48bb9eab14198e76ea8ab7f1a41685d6ad62aa9146d301d4f17eb0ae0"),
            (String(repeating: "a", count: 119), "31eba51c313a5c08226adf18d4a359cfdfd8d2e816b13f4af952f7ea6584dcfb"),
            (String(repeating: "a", count: 120), "2f3d335432c70b580af0e8e1b3674a7c020d683aa5f73aaaedfdc55af904c21c"),
            (String(repeating: "a", count: 128), "6836cf13bac400e9105071cd6af47084dfacad4e5e302c94bfed24e013afb73e"),
        ])
        func sha256Vectors(text: String, hex: String) {
            #expect(CacheKey.sha256Hex(text) == hex)
            let key = CacheKey.analysis(module: .emotion, modelVersion: "m", normalizedText: text)
            #expect(key.description == "soma:v1:a:emotion:m:\(hex)")
        }

        @Test func sha256OfOneMillionA() {
            let text = String(repeating: "a", count: 1_000_000)
            #expect(CacheKey.sha256Hex(text) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
        }

        @Test func layout() {
            let emotion = CacheKey.analysis(module: .emotion, modelVersion: "3f9a01", normalizedText: "abc")
            #expect(
                emotion.description
                    == "soma:v1:a:emotion:3f9a01:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
            )
            let tom = CacheKey.analysis(module: .theoryOfMind, modelVersion: "v2", normalizedText: "")
            #expect(
                String(describing: tom)
                    == "soma:v1:a:theory_of_mind:v2:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
            )
            // Per-user keys name the user by tag: no id in a shared layer.
            #expect(CacheKey.user("u-42", "profile").description == "soma:v1:u:\(UserTag("u-42").hex):profile")
            #expect(UserTag("u-42").hex.utf8.count == 32)
            #expect(UserTag("u-42") != UserTag("u-43"))
        }

        @Test func separatorsInFreeFormPartsAreEscaped() {
            let a = CacheKey.user("a:b", "c")
            let b = CacheKey.user("a", "b:c")
            #expect(a.description == "soma:v1:u:\(UserTag("a:b").hex):c")
            #expect(b.description == "soma:v1:u:\(UserTag("a").hex):b%3Ac")
            #expect(CacheKey.user("p", "100%").description == "soma:v1:u:\(UserTag("p").hex):100%25")
            #expect(a != b)
            #expect(a.description != b.description)
            let versioned = CacheKey.analysis(module: .values, modelVersion: "fp16:1", normalizedText: "abc")
            #expect(versioned.description.hasPrefix("soma:v1:a:values:fp16%3A1:ba7816bf"))
        }

        @Test func accessorsAndIdentity() {
            let analysis = CacheKey.analysis(module: .narrative, modelVersion: "v1", normalizedText: "Once upon a time.")
            let profile = CacheKey.user("alice", "profile")
            #expect(analysis.userTag == nil)
            #expect(analysis.module == .narrative)
            #expect(profile.userTag == UserTag("alice"))
            #expect(profile.module == nil)

            #expect(analysis == CacheKey.analysis(module: .narrative, modelVersion: "v1", normalizedText: "Once upon a time."))
            #expect(analysis != CacheKey.analysis(module: .emotion, modelVersion: "v1", normalizedText: "Once upon a time."))
            #expect(analysis != CacheKey.analysis(module: .narrative, modelVersion: "v2", normalizedText: "Once upon a time."))
            #expect(analysis != CacheKey.analysis(module: .narrative, modelVersion: "v1", normalizedText: "Once upon a time"))
            #expect(profile == CacheKey.user("alice", "profile"))
            #expect(profile != CacheKey.user("alice", "summary"))
            #expect(profile != CacheKey.user("bob", "profile"))
            #expect(Set([analysis, profile, CacheKey.user("alice", "profile")]).count == 2)
        }
    }

    // MARK: L1Cache

    @Suite(.timeLimit(.minutes(1)))
    struct Cache {
        private func key(_ name: String) -> CacheKey { .user("test", name) }

        private func makeCache(
            maxBytes: Int = 1_000,
            maxEntries: Int? = nil,
            defaultTTL: Duration = .seconds(60),
            clock: ManualClock = ManualClock()
        ) -> L1Cache<String> {
            L1Cache(configuration: .init(maxBytes: maxBytes, maxEntries: maxEntries, defaultTTL: defaultTTL), clock: clock)
        }

        @Test func storesReplacesAndRemoves() {
            let cache = makeCache()
            #expect(cache.get(key("a")) == nil)
            #expect(cache.set(key("a"), "one", cost: 10))
            #expect(cache.get(key("a")) == "one")
            #expect(cache.set(key("a"), "two", cost: 25))
            #expect(cache.get(key("a")) == "two")
            #expect(cache.count == 1)
            #expect(cache.bytes == 25)
            #expect(cache.remove(key("a")))
            #expect(!cache.remove(key("a")))
            #expect(cache.get(key("a")) == nil)
            #expect(cache.count == 0)
            #expect(cache.bytes == 0)
        }

        @Test func getRefreshesRecency() {
            let cache = makeCache(maxEntries: 3)
            cache.set(key("a"), "a", cost: 1)
            cache.set(key("b"), "b", cost: 1)
            cache.set(key("c"), "c", cost: 1)
            #expect(cache.keysByRecency() == [key("c"), key("b"), key("a")])
            #expect(cache.get(key("a")) == "a")
            #expect(cache.keysByRecency() == [key("a"), key("c"), key("b")])
            cache.set(key("d"), "d", cost: 1)
            // b was the least recently used once a was read.
            #expect(cache.keysByRecency() == [key("d"), key("a"), key("c")])
            #expect(cache.get(key("b")) == nil)
            #expect(cache.stats().evictions == 1)
            // A replacement refreshes recency too.
            cache.set(key("c"), "c2", cost: 1)
            #expect(cache.keysByRecency() == [key("c"), key("d"), key("a")])
        }

        @Test func byteBoundEvictsLeastRecentlyUsedUntilItFits() {
            let cache = makeCache(maxBytes: 100)
            cache.set(key("a"), "a", cost: 40)
            cache.set(key("b"), "b", cost: 40)
            cache.set(key("c"), "c", cost: 20)
            #expect(cache.bytes == 100)
            #expect(cache.count == 3)
            _ = cache.get(key("a"))
            // Recency a, c, b: adding 50 bytes must drop b (40) and then c (20).
            #expect(cache.set(key("d"), "d", cost: 50))
            #expect(cache.keysByRecency() == [key("d"), key("a")])
            #expect(cache.bytes == 90)
            #expect(cache.stats().evictions == 2)
            // Growing an entry in place evicts others, never the entry itself.
            #expect(cache.set(key("a"), "a2", cost: 100))
            #expect(cache.keysByRecency() == [key("a")])
            #expect(cache.bytes == 100)
            #expect(cache.stats().evictions == 3)
        }

        @Test func countBound() {
            let cache = makeCache(maxBytes: 1_000_000, maxEntries: 5)
            for i in 0..<12 { cache.set(key("k\(i)"), "v\(i)", cost: 1) }
            #expect(cache.count == 5)
            #expect(cache.keysByRecency() == (7..<12).reversed().map { key("k\($0)") })
            #expect(cache.stats().evictions == 7)
            #expect(cache.get(key("k6")) == nil)
            #expect(cache.get(key("k7")) == "v7")
        }

        @Test func oversizeValueIsNotStored() {
            let cache = makeCache(maxBytes: 100)
            cache.set(key("small"), "s", cost: 60)
            #expect(!cache.set(key("big"), "b", cost: 101))
            #expect(cache.get(key("big")) == nil)
            // The rejected value did not push anything out.
            #expect(cache.get(key("small")) == "s")
            #expect(cache.bytes == 60)
            // Exactly the bound fits.
            #expect(cache.set(key("edge"), "e", cost: 100))
            #expect(cache.keysByRecency() == [key("edge")])
            // An oversize replacement removes the old value rather than leaving it readable.
            #expect(!cache.set(key("edge"), "e2", cost: 500))
            #expect(cache.get(key("edge")) == nil)
            #expect(cache.count == 0)
            #expect(cache.bytes == 0)
            let stats = cache.stats()
            #expect(stats.rejections == 2)
            #expect(stats.inserts == 2)
        }

        @Test func entriesExpireAfterTheirTTL() {
            let clock = ManualClock()
            let cache = makeCache(defaultTTL: .seconds(10), clock: clock)
            cache.set(key("a"), "a", cost: 5)
            clock.advance(by: .milliseconds(9_999))
            #expect(cache.get(key("a")) == "a")
            clock.advance(by: .milliseconds(1))
            #expect(cache.get(key("a")) == nil)
            #expect(cache.count == 0)
            #expect(cache.bytes == 0)
            let stats = cache.stats()
            #expect(stats.hits == 1)
            #expect(stats.misses == 1)
            #expect(stats.expirations == 1)
            #expect(stats.evictions == 0)
        }

        @Test func ttlCanBeSetPerEntry() {
            let clock = ManualClock()
            let cache = makeCache(defaultTTL: .seconds(10), clock: clock)
            cache.set(key("short"), "s", cost: 1, ttl: .seconds(1))
            cache.set(key("default"), "d", cost: 1)
            cache.set(key("long"), "l", cost: 1, ttl: .seconds(100))
            clock.advance(by: .seconds(2))
            #expect(cache.get(key("short")) == nil)
            #expect(cache.get(key("default")) == "d")
            #expect(cache.get(key("long")) == "l")
            clock.advance(by: .seconds(10))
            #expect(cache.get(key("default")) == nil)
            #expect(cache.get(key("long")) == "l")
            // A set restarts the entry's TTL.
            cache.set(key("long"), "l2", cost: 1, ttl: .seconds(1))
            clock.advance(by: .seconds(1))
            #expect(cache.get(key("long")) == nil)
            #expect(cache.stats().expirations == 3)
            // A TTL that is not positive stores nothing.
            #expect(!cache.set(key("zero"), "z", cost: 1, ttl: .zero))
            #expect(cache.get(key("zero")) == nil)
        }

        @Test func purgeExpiredRemovesOnlyExpiredEntries() {
            let clock = ManualClock()
            let cache = makeCache(defaultTTL: .seconds(10), clock: clock)
            for i in 0..<6 { cache.set(key("k\(i)"), "v", cost: 10, ttl: .seconds(i % 2 == 0 ? 5 : 50)) }
            clock.advance(by: .seconds(5))
            // Expired entries are held (and counted) until something meets them.
            #expect(cache.count == 6)
            #expect(cache.purgeExpired() == 3)
            #expect(cache.count == 3)
            #expect(cache.bytes == 30)
            #expect(cache.keysByRecency() == [key("k5"), key("k3"), key("k1")])
            #expect(cache.stats().expirations == 3)
            #expect(cache.purgeExpired() == 0)
        }

        @Test func evictionOfAnExpiredEntryCountsAsExpiration() {
            let clock = ManualClock()
            let cache = makeCache(maxEntries: 2, clock: clock)
            cache.set(key("old"), "o", cost: 1, ttl: .seconds(1))
            cache.set(key("live"), "l", cost: 1)
            clock.advance(by: .seconds(2))
            cache.set(key("new"), "n", cost: 1)
            #expect(cache.keysByRecency() == [key("new"), key("live")])
            let stats = cache.stats()
            #expect(stats.expirations == 1)
            #expect(stats.evictions == 0)
        }

        @Test func removeAllForOneUserLeavesOtherEntries() {
            let cache = makeCache()
            let analysis = CacheKey.analysis(module: .emotion, modelVersion: "v1", normalizedText: "I am glad.")
            cache.set(analysis, "shared", cost: 10)
            cache.set(.user("alice", "profile"), "alice profile", cost: 10)
            cache.set(.user("alice", "summary"), "alice summary", cost: 10)
            cache.set(.user("bob", "profile"), "bob profile", cost: 10)
            cache.set(.user("alice2", "profile"), "alice2 profile", cost: 10)

            #expect(cache.removeAll { $0.userTag == UserTag("alice") } == 2)
            #expect(cache.get(.user("alice", "profile")) == nil)
            #expect(cache.get(.user("alice", "summary")) == nil)
            #expect(cache.get(.user("bob", "profile")) == "bob profile")
            #expect(cache.get(.user("alice2", "profile")) == "alice2 profile")
            #expect(cache.get(analysis) == "shared")
            #expect(cache.count == 3)
            #expect(cache.bytes == 30)
            #expect(cache.removeAll { _ in true } == 3)
            #expect(cache.count == 0)
            #expect(cache.bytes == 0)
            // Freed slots are reused.
            cache.set(.user("carol", "profile"), "c", cost: 1)
            #expect(cache.get(.user("carol", "profile")) == "c")
        }

        @Test func statsCountEveryOutcome() {
            let clock = ManualClock()
            let cache = makeCache(maxBytes: 10, defaultTTL: .seconds(5), clock: clock)
            #expect(cache.stats() == L1Cache<String>.Stats())
            #expect(cache.stats().hitRate == 0)
            cache.set(key("a"), "a", cost: 4)  // insert
            cache.set(key("b"), "b", cost: 4)  // insert
            cache.set(key("a"), "a", cost: 4)  // insert (replacement)
            _ = cache.get(key("a"))  // hit
            _ = cache.get(key("a"))  // hit
            _ = cache.get(key("x"))  // miss
            cache.set(key("c"), "c", cost: 4)  // insert, evicts b
            cache.set(key("huge"), "h", cost: 11)  // rejection
            clock.advance(by: .seconds(5))
            _ = cache.get(key("a"))  // miss, expiration
            #expect(cache.purgeExpired() == 1)  // expiration (c)

            var expected = L1Cache<String>.Stats()
            expected.hits = 2
            expected.misses = 2
            expected.evictions = 1
            expected.expirations = 2
            expected.inserts = 4
            expected.rejections = 1
            #expect(cache.stats() == expected)
            #expect(cache.stats().hitRate == 0.5)
        }

        @Test func concurrentUseKeepsTheBoundsAndTheCounts() async {
            let cache = L1Cache<Int>(configuration: .init(maxBytes: 2_000, maxEntries: 64, defaultTTL: .seconds(60)))
            let tasks = 1_000
            let operationsPerTask = 50
            await withTaskGroup(of: Void.self) { group in
                for t in 0..<tasks {
                    group.addTask {
                        var rng = SeededRandom(seed: UInt64(t))
                        for _ in 0..<operationsPerTask {
                            let k = CacheKey.user("u\(rng.next(below: 8))", "k\(rng.next(below: 32))")
                            if rng.next(below: 2) == 0 {
                                if let value = cache.get(k) { precondition(value >= 0) }
                            } else {
                                cache.set(k, t, cost: rng.next(below: 100))
                            }
                            if rng.next(below: 100) == 0 { cache.removeAll { $0.userTag == UserTag("u0") } }
                        }
                    }
                }
            }
            let stats = cache.stats()
            #expect(stats.hits + stats.misses + stats.inserts + stats.rejections == tasks * operationsPerTask)
            #expect(stats.hits > 0)
            #expect(stats.rejections == 0)
            #expect(cache.count <= 64)
            #expect(cache.bytes <= 2_000)
            let keys = cache.keysByRecency()
            #expect(keys.count == cache.count)
            #expect(Set(keys).count == keys.count)
            for k in keys { #expect(cache.get(k) != nil) }
        }

        /// 10,000 random operations on the cache and on an obviously correct array-based model, in
        /// lockstep: every answer, the recency order, the byte count and the counters must agree after
        /// every step. The first divergence stops the test, so a failure names one step to replay.
        @Test(arguments: [UInt64(1), 2, 3])
        func matchesAReferenceModel(seed: UInt64) throws {
            let clock = ManualClock()
            let configuration = L1Cache<Int>.Configuration(maxBytes: 120, maxEntries: 8, defaultTTL: .seconds(10))
            let cache = L1Cache<Int>(configuration: configuration, clock: clock)
            var model = ReferenceLRU(configuration: configuration)
            var rng = SeededRandom(seed: seed)
            let keys: [CacheKey] =
                (0..<12).map { CacheKey.user("u\($0 % 3)", "k\($0)") }
                + (0..<8).map { CacheKey.analysis(module: Module.allCases[$0 % 5], modelVersion: "v", normalizedText: "t\($0)") }

            for step in 0..<10_000 {
                let key = keys[rng.next(below: keys.count)]
                switch rng.next(below: 100) {
                case 0..<40:
                    try #require(cache.get(key) == model.get(key), "get at step \(step)")
                case 40..<75:
                    let value = step
                    // Costs up to 130 so that some exceed the 120-byte bound.
                    let cost = rng.next(below: 131)
                    let ttl: Duration? =
                        switch rng.next(below: 4) {
                        case 0: .seconds(rng.next(below: 4))  // includes a zero TTL
                        case 1: .seconds(20 + rng.next(below: 20))
                        default: nil
                        }
                    try #require(cache.set(key, value, cost: cost, ttl: ttl) == model.set(key, value, cost: cost, ttl: ttl), "set at step \(step)")
                case 75..<85:
                    try #require(cache.remove(key) == model.remove(key), "remove at step \(step)")
                case 85..<93:
                    let by = Duration.milliseconds(rng.next(below: 3_000))
                    clock.advance(by: by)
                    model.now += by
                case 93..<97:
                    let user = "u\(rng.next(below: 3))"
                    try #require(
                        cache.removeAll { $0.userTag == UserTag(user) } == model.removeAll { $0.userTag == UserTag(user) }, "removeAll at step \(step)")
                default:
                    try #require(cache.purgeExpired() == model.purgeExpired(), "purge at step \(step)")
                }
                try #require(cache.keysByRecency() == model.entries.map(\.key), "order at step \(step)")
                try #require(cache.bytes == model.bytes, "bytes at step \(step)")
                try #require(cache.count == model.entries.count, "count at step \(step)")
                try #require(cache.stats() == model.stats, "stats at step \(step)")
            }
            let stats = model.stats
            // The mix reached every path.
            #expect(stats.hits > 0 && stats.misses > 0 && stats.evictions > 0)
            #expect(stats.expirations > 0 && stats.rejections > 0)
        }
    }
}

/// LRU with TTL the slow and obvious way: an array, most recently used first.
private struct ReferenceLRU {
    struct Entry {
        var key: CacheKey
        var value: Int
        var cost: Int
        var expiresAt: Duration
    }

    let configuration: L1Cache<Int>.Configuration
    var entries: [Entry] = []
    var now: Duration = .zero
    var stats = L1Cache<Int>.Stats()

    var bytes: Int { entries.reduce(0) { $0 + $1.cost } }

    init(configuration: L1Cache<Int>.Configuration) {
        self.configuration = configuration
    }

    mutating func get(_ key: CacheKey) -> Int? {
        guard let i = entries.firstIndex(where: { $0.key == key }) else {
            stats.misses += 1
            return nil
        }
        let entry = entries.remove(at: i)
        if entry.expiresAt <= now {
            stats.misses += 1
            stats.expirations += 1
            return nil
        }
        entries.insert(entry, at: 0)
        stats.hits += 1
        return entry.value
    }

    mutating func set(_ key: CacheKey, _ value: Int, cost: Int, ttl: Duration?) -> Bool {
        entries.removeAll { $0.key == key }
        let ttl = ttl ?? configuration.defaultTTL
        guard cost <= configuration.maxBytes, ttl > .zero else {
            stats.rejections += 1
            return false
        }
        entries.insert(Entry(key: key, value: value, cost: cost, expiresAt: now + ttl), at: 0)
        stats.inserts += 1
        while bytes > configuration.maxBytes || entries.count > (configuration.maxEntries ?? .max) {
            let victim = entries.removeLast()
            if victim.expiresAt <= now { stats.expirations += 1 } else { stats.evictions += 1 }
        }
        return true
    }

    mutating func remove(_ key: CacheKey) -> Bool {
        let before = entries.count
        entries.removeAll { $0.key == key }
        return entries.count != before
    }

    mutating func removeAll(where shouldRemove: (CacheKey) -> Bool) -> Int {
        let before = entries.count
        entries.removeAll { shouldRemove($0.key) }
        return before - entries.count
    }

    mutating func purgeExpired() -> Int {
        let before = entries.count
        let now = now
        entries.removeAll { $0.expiresAt <= now }
        stats.expirations += before - entries.count
        return before - entries.count
    }
}
