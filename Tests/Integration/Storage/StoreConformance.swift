import Foundation
import Soma
import Testing

/// The behaviour every `Store` must show, run against each of `StoreFactory.all`.
@Suite(.timeLimit(.minutes(1)))
struct StoreConformanceTests {
    typealias S = StoreSamples

    @Test(arguments: StoreFactory.all)
    func migratesAnEmptyStoreAndRerunsHarmlessly(factory: StoreFactory) async throws {
        try await factory.withStore(migrated: false) { store async throws in
            try await store.migrate()
            let entry = S.entry(user: "alice")
            #expect(try await store.insertEntry(entry, idempotencyKey: nil) == .inserted(entry))
            try await store.migrate()
            try await store.migrate()
            #expect(try await store.entry(user: "alice", id: entry.id) == entry, "re-running migrate keeps the data")
        }
    }

    @Test(arguments: StoreFactory.all)
    func insertsGetsListsAndDeletes(factory: StoreFactory) async throws {
        try await factory.withStore { store async throws in
            #expect(try await store.entry(user: "alice", id: "missing") == nil)
            #expect(try await store.entries(user: "alice", limit: 10, cursor: nil) == EntryPage(entries: [], nextCursor: nil))

            let older = S.entry(user: "alice", text: "older", milliseconds: S.baseMilliseconds)
            let newer = S.entry(user: "alice", text: "newer", milliseconds: S.baseMilliseconds + 1_500)
            #expect(try await store.insertEntry(older, idempotencyKey: nil) == .inserted(older))
            #expect(try await store.insertEntry(newer, idempotencyKey: nil) == .inserted(newer))

            #expect(try await store.entry(user: "alice", id: older.id) == older)
            #expect(try await store.entries(user: "alice", limit: 10, cursor: nil) == EntryPage(entries: [newer, older], nextCursor: nil))
            #expect(try await store.recentEntries(user: "alice", limit: 1) == [newer])
            #expect(try await store.recentEntries(user: "alice", limit: 10) == [newer, older])
            #expect(try await store.recentEntries(user: "alice", limit: 0) == [])

            #expect(try await store.deleteEntry(user: "alice", id: newer.id))
            #expect(try await !store.deleteEntry(user: "alice", id: newer.id), "deleting twice finds nothing")
            #expect(try await store.entry(user: "alice", id: newer.id) == nil)
            #expect(try await store.entries(user: "alice", limit: 10, cursor: nil).entries == [older])
        }
    }

    @Test(arguments: StoreFactory.all)
    func createdAtRoundTripsAtMillisecondPrecision(factory: StoreFactory) async throws {
        try await factory.withStore { store async throws in
            let exact = S.entry(user: "alice", milliseconds: 1_717_171_717_171)
            #expect(try await store.insertEntry(exact, idempotencyKey: nil).entry.createdAt == exact.createdAt)
            #expect(try await store.entry(user: "alice", id: exact.id)?.createdAt == exact.createdAt)

            var fine = S.entry(user: "alice")
            fine.createdAt = Date(timeIntervalSince1970: 1_717_171_717.171_6)
            let inserted = try await store.insertEntry(fine, idempotencyKey: nil).entry
            #expect(inserted.createdAt == UnixMilliseconds.date(1_717_171_717_172), "rounded to the nearest millisecond on write")
            #expect(try await store.entry(user: "alice", id: fine.id) == inserted)

            let early = S.entry(user: "alice", milliseconds: -86_400_123)
            _ = try await store.insertEntry(early, idempotencyKey: nil)
            #expect(try await store.entry(user: "alice", id: early.id)?.createdAt == early.createdAt)
        }
    }

    @Test(arguments: StoreFactory.all)
    func paginatesNewestFirstWithTiesOrderedByIDDescending(factory: StoreFactory) async throws {
        try await factory.withStore { store async throws in
            // 23 entries in groups of four that share a timestamp, inserted in a scrambled order.
            let all = (0..<23).map { i in
                S.entry(user: "alice", id: String(format: "entry-%02d", i), text: "text \(i)", milliseconds: S.baseMilliseconds + Int64(i / 4) * 1_000)
            }
            // 10 is coprime with 23: every entry once, in an order unrelated to the expected one.
            for i in 0..<all.count { _ = try await store.insertEntry(all[i * 10 % all.count], idempotencyKey: nil) }
            _ = try await store.insertEntry(S.entry(user: "bob", milliseconds: S.baseMilliseconds + 2_000), idempotencyKey: nil)
            let expected = all.sorted {
                ($0.createdAt, $0.id) > ($1.createdAt, $1.id)
            }

            for limit in [1, 4, 5, 22, 23, 24, 200] {
                let pages = try await S.allPages(store, user: "alice", limit: limit)
                #expect(pages.flatMap(\.entries) == expected, "limit \(limit)")
                #expect(pages.count == max(1, (expected.count + limit - 1) / limit), "limit \(limit): no empty trailing page")
                #expect(pages.dropLast().allSatisfy { $0.entries.count == limit && $0.nextCursor != nil }, "limit \(limit)")
                #expect(pages.last?.nextCursor == nil, "limit \(limit)")
            }

            let clamped = try await store.entries(user: "alice", limit: 0, cursor: nil)
            #expect(clamped.entries == [expected[0]], "a limit below 1 counts as 1")
            #expect(try await store.entries(user: "alice", limit: -5, cursor: nil).entries.count == 1)
            #expect(try await store.entries(user: "alice", limit: .max, cursor: nil).entries == expected)
        }
    }

    @Test(arguments: StoreFactory.all)
    func pagesStayStableWhileEntriesArriveAndLeave(factory: StoreFactory) async throws {
        try await factory.withStore { store async throws in
            let all = (0..<10).map { i in
                S.entry(user: "alice", id: String(format: "entry-%02d", i), milliseconds: S.baseMilliseconds + Int64(i) * 10)
            }
            for entry in all { _ = try await store.insertEntry(entry, idempotencyKey: nil) }
            let first = try await store.entries(user: "alice", limit: 4, cursor: nil)
            #expect(first.entries == Array(all.reversed().prefix(4)))

            _ = try await store.insertEntry(S.entry(user: "alice", milliseconds: S.baseMilliseconds + 1_000), idempotencyKey: nil)
            #expect(try await store.deleteEntry(user: "alice", id: all[9].id), "deleting the cursor's own entry")
            let second = try await store.entries(user: "alice", limit: 4, cursor: first.nextCursor)
            #expect(second.entries == Array(all.reversed().dropFirst(4).prefix(4)))
        }
    }

    @Test(arguments: StoreFactory.all)
    func malformedCursorsThrowInvalidCursor(factory: StoreFactory) async throws {
        try await factory.withStore { store async throws in
            for i in 0..<3 { _ = try await store.insertEntry(S.entry(user: "alice", milliseconds: S.baseMilliseconds + Int64(i)), idempotencyKey: nil) }
            let good = try #require(try await store.entries(user: "alice", limit: 1, cursor: nil).nextCursor)
            func base64url(_ s: String) -> String {
                Data(s.utf8).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(
                    of: "=", with: "")
            }
            let bad = [
                "", "garbage!", "not base64 at all", "%%%%", good + "=", good + "A", String(good.dropLast()), "\(good)\n",
                base64url("2:1704067200000:x"), base64url("1:soon:x"), base64url("1:1704067200000:"), base64url("1:1704067200000"),
                base64url("1: 1704067200000:x"), base64url("1:99999999999999999999:x"), String(repeating: "A", count: 10_000),
            ]
            for cursor in bad {
                let error = await #expect(throws: StoreError.self, "cursor \(cursor.prefix(40).debugDescription)") {
                    try await store.entries(user: "alice", limit: 1, cursor: cursor)
                }
                #expect(error?.code == .invalidCursor, "cursor \(cursor.prefix(40).debugDescription)")
            }
            #expect(try await store.entries(user: "alice", limit: 1, cursor: good).entries.count == 1, "the good one still works")
        }
    }

    @Test(arguments: StoreFactory.all)
    func idempotencyKeyReturnsTheFirstEntryPerUser(factory: StoreFactory) async throws {
        try await factory.withStore { store async throws in
            let first = S.entry(user: "alice", text: "first")
            let retry = S.entry(user: "alice", text: "retry", milliseconds: S.baseMilliseconds + 5)
            #expect(try await store.insertEntry(first, idempotencyKey: "key-1") == .inserted(first))
            #expect(try await store.insertEntry(retry, idempotencyKey: "key-1") == .existing(first))
            #expect(try await store.entries(user: "alice", limit: 10, cursor: nil).entries == [first], "one row")
            #expect(try await store.entry(user: "alice", id: retry.id) == nil)

            let other = S.entry(user: "bob", text: "bob's")
            #expect(try await store.insertEntry(other, idempotencyKey: "key-1") == .inserted(other), "the same key of another user is independent")
            #expect(try await store.entries(user: "bob", limit: 10, cursor: nil).entries == [other])
            #expect(try await store.entries(user: "alice", limit: 10, cursor: nil).entries == [first])

            let second = S.entry(user: "alice", text: "second", milliseconds: S.baseMilliseconds + 9)
            #expect(try await store.insertEntry(second, idempotencyKey: "key-2") == .inserted(second))
            let unkeyed = S.entry(user: "alice", text: "no key", milliseconds: S.baseMilliseconds + 10)
            #expect(try await store.insertEntry(unkeyed, idempotencyKey: nil) == .inserted(unkeyed))
            #expect(try await store.entries(user: "alice", limit: 10, cursor: nil).entries.count == 3)
        }
    }

    @Test(arguments: StoreFactory.all)
    func replayingAnEntryIDIsIdempotentAndAKeyOfADeletedEntryIsFree(factory: StoreFactory) async throws {
        try await factory.withStore { store async throws in
            let entry = S.entry(user: "alice", text: "queued")
            #expect(try await store.insertEntry(entry, idempotencyKey: nil) == .inserted(entry))
            var replay = entry
            replay.text = "changed on replay"
            #expect(try await store.insertEntry(replay, idempotencyKey: nil) == .existing(entry), "an outbox replay keeps the id")
            #expect(try await store.entries(user: "alice", limit: 10, cursor: nil).entries == [entry])

            let keyed = S.entry(user: "alice", text: "keyed")
            _ = try await store.insertEntry(keyed, idempotencyKey: "k")
            #expect(try await store.deleteEntry(user: "alice", id: keyed.id))
            let again = S.entry(user: "alice", text: "after delete")
            #expect(try await store.insertEntry(again, idempotencyKey: "k") == .inserted(again))
            #expect(try await store.insertEntry(S.entry(user: "alice"), idempotencyKey: "k") == .existing(again))
        }
    }

    @Test(arguments: StoreFactory.all)
    func usersCannotReachEachOthersData(factory: StoreFactory) async throws {
        try await factory.withStore { store async throws in
            let secret = S.entry(user: "alice", text: "alice's secret")
            _ = try await store.insertEntry(secret, idempotencyKey: "shared-key")
            let aliceProfile = ProfileSnapshot(
                userID: "alice", snapshot: Array(#"{"mood":"private"}"#.utf8), updatedAt: UnixMilliseconds.date(S.baseMilliseconds))
            try await store.saveProfile(aliceProfile)
            for i in 0..<3 { _ = try await store.insertEntry(S.entry(user: "alice", milliseconds: S.baseMilliseconds + Int64(i)), idempotencyKey: nil) }
            let aliceCursor = try #require(try await store.entries(user: "alice", limit: 1, cursor: nil).nextCursor)

            #expect(try await store.entry(user: "bob", id: secret.id) == nil)
            #expect(try await store.entries(user: "bob", limit: 200, cursor: nil) == EntryPage(entries: [], nextCursor: nil))
            #expect(try await store.entries(user: "bob", limit: 200, cursor: aliceCursor).entries.isEmpty, "another user's cursor shows nothing")
            #expect(try await store.recentEntries(user: "bob", limit: 200).isEmpty)
            #expect(try await store.profile(user: "bob") == nil)
            #expect(try await !store.deleteEntry(user: "bob", id: secret.id))
            #expect(try await store.entry(user: "alice", id: secret.id) == secret, "still there after bob's delete")

            let bobs = S.entry(user: "bob", text: "bob's own")
            #expect(try await store.insertEntry(bobs, idempotencyKey: "shared-key") == .inserted(bobs), "alice's key does not answer bob")

            // Bob cannot overwrite or read alice's entry by reusing its id.
            var hijack = S.entry(user: "bob", id: secret.id, text: "bob writes over alice")
            hijack.analysis = S.analysis("anger")
            let error = await #expect(throws: StoreError.self) { try await store.insertEntry(hijack, idempotencyKey: nil) }
            #expect(error?.code == .failed)
            #expect(!(error?.description.contains("alice's secret") ?? false))
            #expect(try await store.entry(user: "alice", id: secret.id) == secret)
            #expect(try await store.entry(user: "bob", id: secret.id) == nil)

            #expect(try await store.deleteUser("bob") == UserErasure(entries: 1, profiles: 0, idempotencyKeys: 1, user: true))
            #expect(try await store.entries(user: "alice", limit: 200, cursor: nil).entries.count == 4)
            #expect(try await store.profile(user: "alice") == aliceProfile)
        }
    }

    @Test(arguments: StoreFactory.all)
    func deleteUserErasesEverythingOfThatUserOnly(factory: StoreFactory) async throws {
        try await factory.withStore { store async throws in
            try await store.recordUser("alice", tier: .premium)
            for i in 0..<3 {
                _ = try await store.insertEntry(S.entry(user: "alice", milliseconds: S.baseMilliseconds + Int64(i)), idempotencyKey: i < 2 ? "key-\(i)" : nil)
            }
            try await store.saveProfile(ProfileSnapshot(userID: "alice", snapshot: Array("{}".utf8), updatedAt: UnixMilliseconds.date(S.baseMilliseconds)))
            let bobs = S.entry(user: "bob")
            _ = try await store.insertEntry(bobs, idempotencyKey: "key-0")
            let bobProfile = ProfileSnapshot(userID: "bob", snapshot: Array(#"{"n":1}"#.utf8), updatedAt: UnixMilliseconds.date(S.baseMilliseconds))
            try await store.saveProfile(bobProfile)

            #expect(try await store.deleteUser("alice") == UserErasure(entries: 3, profiles: 1, idempotencyKeys: 2, user: true))
            #expect(try await store.entries(user: "alice", limit: 200, cursor: nil).entries.isEmpty)
            #expect(try await store.profile(user: "alice") == nil)
            #expect(try await store.deleteUser("alice") == UserErasure(), "erasing again finds nothing")
            #expect(try await store.deleteUser("nobody") == UserErasure())

            #expect(try await store.entries(user: "bob", limit: 200, cursor: nil).entries == [bobs])
            #expect(try await store.profile(user: "bob") == bobProfile)
            #expect(try await store.insertEntry(S.entry(user: "bob"), idempotencyKey: "key-0") == .existing(bobs), "bob's keys survive")

            // A new write, made after the erasure (an older one is an outbox replay the erasure
            // must not let back in; PostgresStoreTests covers that).
            let fresh = S.entry(user: "alice", milliseconds: UnixMilliseconds.from(Date()) + 10)
            #expect(try await store.insertEntry(fresh, idempotencyKey: "key-0") == .inserted(fresh), "alice's keys are gone")
        }
    }

    @Test(arguments: StoreFactory.all)
    func oddAndHostileStringsRoundTripVerbatim(factory: StoreFactory) async throws {
        try await factory.withStore { store async throws in
            for (i, odd) in S.oddStrings.enumerated() {
                let entry = S.entry(
                    user: odd, text: odd, milliseconds: S.baseMilliseconds + Int64(i),
                    analysis: Array(#"{"text":\#(S.jsonString(odd))}"#.utf8), modelVersion: odd
                )
                #expect(try await store.insertEntry(entry, idempotencyKey: odd) == .inserted(entry))
                #expect(try await store.entry(user: odd, id: entry.id) == entry, "\(odd.debugDescription)")
                #expect(try await store.entries(user: odd, limit: 10, cursor: nil).entries == [entry], "\(odd.debugDescription)")
                #expect(try await store.insertEntry(S.entry(user: odd), idempotencyKey: odd) == .existing(entry), "\(odd.debugDescription)")
                let profile = ProfileSnapshot(
                    userID: odd, snapshot: Array(#"{ "note" : \#(S.jsonString(odd)) }"#.utf8), updatedAt: UnixMilliseconds.date(S.baseMilliseconds))
                try await store.saveProfile(profile)
                #expect(try await store.profile(user: odd) == profile, "\(odd.debugDescription)")
            }
            for odd in S.oddStrings {
                #expect(try await store.entries(user: odd, limit: 10, cursor: nil).entries.count == 1, "every user kept exactly their row")
            }
            #expect(try await store.entry(user: "' OR '1'='1", id: "' OR '1'='1") == nil)
            #expect(try await store.deleteUser("' OR '1'='1").entries == 1)
            #expect(try await store.entries(user: "", limit: 10, cursor: nil).entries.count == 1)
        }
    }

    @Test(arguments: StoreFactory.all)
    func profilesAreSavedReplacedAndRead(factory: StoreFactory) async throws {
        try await factory.withStore { store async throws in
            #expect(try await store.profile(user: "alice") == nil)
            let first = ProfileSnapshot(userID: "alice", snapshot: Array(#"{"entries":1}"#.utf8), updatedAt: UnixMilliseconds.date(S.baseMilliseconds))
            try await store.saveProfile(first)
            #expect(try await store.profile(user: "alice") == first)

            let second = ProfileSnapshot(
                userID: "alice", snapshot: Array(#"{"entries":2,"mood":"calm 😌"}"#.utf8), updatedAt: UnixMilliseconds.date(S.baseMilliseconds + 60_000))
            try await store.saveProfile(second)
            #expect(try await store.profile(user: "alice") == second)

            var fine = second
            fine.updatedAt = Date(timeIntervalSince1970: 1_717_171_717.171_4)
            try await store.saveProfile(fine)
            #expect(try await store.profile(user: "alice")?.updatedAt == UnixMilliseconds.date(1_717_171_717_171))
            #expect(try await store.deleteUser("alice").profiles == 1, "replacing keeps one profile")
        }
    }

    @Test(arguments: StoreFactory.all)
    func recordingUsersDoesNotTouchTheirData(factory: StoreFactory) async throws {
        try await factory.withStore { store async throws in
            let entry = S.entry(user: "alice")
            _ = try await store.insertEntry(entry, idempotencyKey: nil)
            for tier in [Tier.free, .premium, .standard, .premium] { try await store.recordUser("alice", tier: tier) }
            try await store.recordUser("carol", tier: .free)
            #expect(try await store.entries(user: "alice", limit: 10, cursor: nil).entries == [entry])
            #expect(try await store.deleteUser("carol") == UserErasure(user: true))
            #expect(try await store.deleteUser("alice") == UserErasure(entries: 1, user: true))
        }
    }

    @Test(arguments: StoreFactory.all)
    func mostActiveUsersCountEntriesWithTiesByUserID(factory: StoreFactory) async throws {
        try await factory.withStore { store async throws in
            #expect(try await store.mostActiveUsers(limit: 10) == [])
            // "B" sorts before "a" bytewise (as SQLite's BINARY and PostgreSQL's "C" collation compare).
            let counts = ["a": 3, "B": 3, "carol": 1, "dave": 2, "ünï": 2]
            for (user, count) in counts {
                for i in 0..<count { _ = try await store.insertEntry(S.entry(user: user, milliseconds: S.baseMilliseconds + Int64(i)), idempotencyKey: nil) }
            }
            try await store.recordUser("eve", tier: .premium)
            #expect(try await store.mostActiveUsers(limit: 10) == ["B", "a", "dave", "ünï", "carol"], "users without entries are not listed")
            #expect(try await store.mostActiveUsers(limit: 2) == ["B", "a"])
            #expect(try await store.mostActiveUsers(limit: 0) == [])
            #expect(try await store.mostActiveUsers(limit: -1) == [])
            _ = try await store.deleteUser("B")
            #expect(try await store.mostActiveUsers(limit: 3) == ["a", "dave", "ünï"])
        }
    }

    @Test(arguments: StoreFactory.all)
    func aReachableStoreIsHealthyBeforeAndAfterMigrating(factory: StoreFactory) async throws {
        try await factory.withStore(migrated: false) { store async throws in
            #expect(await store.isHealthy(), "healthy means reachable, schema or not")
            try await store.migrate()
            #expect(await store.isHealthy())
        }
    }
}
