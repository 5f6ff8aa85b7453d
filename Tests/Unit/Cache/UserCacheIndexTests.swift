import Soma
import Testing

@Suite struct UserCacheIndexTests {
    private func key(_ text: String, _ module: Module = .emotion) -> CacheKey {
        CacheKey.analysis(module: module, modelVersion: "v1", normalizedText: text)
    }

    @Test func remembersWhatEachUserTouchedSeparately() {
        let index = UserCacheIndex(ttl: .seconds(60), clock: ManualClock())
        let (ada, bo) = (UserTag("ada"), UserTag("bo"))
        index.insert(ada, [key("a"), key("b")])
        #expect(index.seen(ada, [key("a"), key("b"), key("c")]) == [true, true, false])
        #expect(index.seen(bo, [key("a")]) == [false])
        #expect(index.remove(ada) == Set([key("a"), key("b")].map(UserCacheIndex.fingerprint)))
        #expect(index.seen(ada, [key("a")]) == [false])
        #expect(index.count == 0)
    }

    @Test func idleUsersArePrunedAfterTheTTL() {
        let clock = ManualClock()
        let index = UserCacheIndex(ttl: .seconds(60), clock: clock)
        index.insert(UserTag("ada"), [key("a")])
        clock.advance(by: .seconds(30))
        index.insert(UserTag("bo"), [key("b")])
        clock.advance(by: .seconds(40))
        #expect(index.prune() == 1)
        #expect(index.seen(UserTag("bo"), [key("b")]) == [true])
        #expect(index.count == 1)
    }

    @Test func pastTheBoundTheLeastRecentlyActiveUsersAreDroppedAndHandedBack() {
        let clock = ManualClock()
        let index = UserCacheIndex(ttl: .seconds(600), maxKeys: 3, clock: clock)
        index.insert(UserTag("ada"), [key("a1"), key("a2")])
        clock.advance(by: .seconds(1))
        let dropped = index.insert(UserTag("bo"), [key("b1"), key("b2")])
        #expect(dropped == Set([key("a1"), key("a2")].map(UserCacheIndex.fingerprint)), "the caller must purge these")
        #expect(index.count == 2)
        #expect(index.seen(UserTag("ada"), [key("a1")]) == [false])
    }

    /// The tiered cache over L1 alone: one user's entry serves another without being reported
    /// as theirs, and erasing a user purges what they touched and only that.
    @Test func theTieredCacheReportsOnlyTheCallersOwnHitsAndErasesWhatTheyTouched() async {
        let cache = TieredCache(l1: L1Cache(), metrics: SomaMetrics())
        let (ada, bo) = (UserTag("ada"), UserTag("bo"))
        #expect(await cache.get([key("x")], for: ada) == [nil])
        await cache.set([(key("x"), [1]), (key("y"), [2])])
        let forBo = await cache.get([key("x")], for: bo)
        #expect(forBo.first??.value == [1], "served from the shared entry")
        #expect(forBo.first??.seen == false, "but not Bo's own")
        #expect((await cache.get([key("x")], for: ada)).first??.seen == true)
        #expect((await cache.get([key("x")], for: bo)).first??.seen == true, "now Bo has been served it")
        #expect((await cache.get([key("y")])).first??.seen == true, "a lookup for nobody reports as is")

        await cache.setUser(CacheKey.user("ada", "profile"), [9])
        #expect(await cache.eraseUser("ada") == 2, "x and her profile; y was never hers")
        #expect(await cache.get([key("x"), key("y")]).map { $0?.value } == [nil, [2]])
    }
}

@Suite struct CacheKeyFingerprintTests {
    /// The request path streams the fingerprint; names read back from the fallback file are
    /// hashed whole. Both must agree, escapes included, or an erasure would miss entries.
    @Test(arguments: [
        CacheKey.analysis(module: .theoryOfMind, modelVersion: "soma-3c77", normalizedText: "a text"),
        CacheKey.analysis(module: .values, modelVersion: "v1@0123:%x", normalizedText: ""),
        CacheKey.user("ada", "profile"),
        CacheKey.user("a:b", "n%:x"),
    ])
    func theStreamedFingerprintIsTheHashOfTheName(key: CacheKey) {
        #expect(key.nameFingerprint == FNVOfName.hash(key.description))
        #expect(UserCacheIndex.fingerprint(key) == UserCacheIndex.fingerprint(name: key.description))
    }
}

/// FNV-1a 64 over UTF-8, written out here so the test does not trust the code it checks.
private enum FNVOfName {
    static func hash(_ s: String) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in s.utf8 {
            h ^= UInt64(b)
            h &*= 0x0000_0100_0000_01B3
        }
        return h
    }
}
