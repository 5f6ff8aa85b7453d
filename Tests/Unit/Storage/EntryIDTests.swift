import Foundation
import Soma
import Testing

@Suite struct EntryIDTests {
    /// The 16 bytes of a canonical lowercase UUID string, or `nil` when it is not one.
    static func bytes(_ id: String) -> [UInt8]? {
        let utf8 = Array(id.utf8)
        guard utf8.count == 36 else { return nil }
        var hex: [UInt8] = []
        for (i, c) in utf8.enumerated() {
            if [8, 13, 18, 23].contains(i) {
                guard c == UInt8(ascii: "-") else { return nil }
                continue
            }
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): hex.append(c - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): hex.append(c - UInt8(ascii: "a") + 10)
            default: return nil
            }
        }
        return stride(from: 0, to: 32, by: 2).map { hex[$0] << 4 | hex[$0 + 1] }
    }

    @Test func isALowercaseUUIDv7CarryingTheMillisecondTimestamp() throws {
        let now = UnixMilliseconds.date(1_717_171_717_171)
        for _ in 0..<200 {
            let id = EntryID.generate(now: now)
            let bytes = try #require(Self.bytes(id), "\(id)")
            #expect(bytes[6] >> 4 == 7, "version 7: \(id)")
            #expect(bytes[8] >> 6 == 0b10, "RFC 9562 variant: \(id)")
            let milliseconds = bytes[0..<6].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
            #expect(milliseconds == 1_717_171_717_171)
            #expect(id.hasPrefix("018f"), "\(id)")
            #expect(UUID(uuidString: id) != nil)
        }
    }

    @Test func isUniqueAndSortsByTime() {
        var rng = SeededRandom(seed: 11)
        let base: Int64 = 1_704_067_200_000
        let ids = (0..<2_000).map { i in EntryID.generate(now: UnixMilliseconds.date(base + Int64(i)), using: &rng) }
        #expect(Set(ids).count == ids.count)
        #expect(ids == ids.sorted(), "a later millisecond sorts after an earlier one")
        let fresh = (0..<2_000).map { _ in EntryID.generate() }
        #expect(Set(fresh).count == fresh.count)
    }

    @Test func isReproducibleWithASeededGenerator() {
        var a = SeededRandom(seed: 3)
        var b = SeededRandom(seed: 3)
        let now = Date(timeIntervalSince1970: 1_700_000_000)
        #expect(EntryID.generate(now: now, using: &a) == EntryID.generate(now: now, using: &b))
    }

    @Test func clampsDatesOutsideTheTimestampRange() throws {
        let early = EntryID.generate(now: Date(timeIntervalSince1970: -1_000))
        #expect(early.hasPrefix("00000000-0000-7"), "\(early)")
        let bytes = try #require(Self.bytes(EntryID.generate(now: .distantFuture)))
        #expect(bytes[6] >> 4 == 7)
    }
}

@Suite struct EntryCursorTests {
    @Test(arguments: [
        EntryCursor(createdAtMilliseconds: 1_704_067_200_000, id: "0190a5b0-7c1e-7d3a-9f00-0123456789ab"),
        EntryCursor(createdAtMilliseconds: 0, id: "a"),
        EntryCursor(createdAtMilliseconds: -86_400_000, id: "with:colons:and 🧠"),
        EntryCursor(createdAtMilliseconds: .max, id: "x"),
        EntryCursor(createdAtMilliseconds: .min, id: "y"),
        // Starts with a combining mark: ":" + U+0301 is one Character (found by make fuzz).
        EntryCursor(createdAtMilliseconds: 5, id: "\u{301}x"),
    ])
    func roundTripsThroughAnOpaqueBase64URLString(cursor: EntryCursor) throws {
        let encoded = cursor.encoded
        #expect(encoded.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") }, "\(encoded)")
        #expect(!encoded.contains(":"), "opaque")
        #expect(try EntryCursor(decoding: encoded) == cursor)
    }

    @Test func continuesAfterAnEntry() throws {
        let entry = Entry(id: "e1", userID: "u", text: "", createdAt: UnixMilliseconds.date(1_234), analysis: [], modelVersion: "m")
        #expect(EntryCursor(after: entry) == EntryCursor(createdAtMilliseconds: 1_234, id: "e1"))
    }

    @Test(arguments: ["", "====", "a", "MTox", "MTp4Ong", "Mjox", "MToxOng=", "MTowMTp4", "MTorMTp4", "MToxOmEA"])
    func rejectsStringsItDidNotProduce(string: String) {
        let error = #expect(throws: StoreError.self) { try EntryCursor(decoding: string) }
        #expect(error?.code == .invalidCursor)
    }
}

@Suite struct UnixMillisecondsTests {
    @Test func roundsToTheNearestMillisecondAndRoundTrips() {
        for ms: Int64 in [0, 1, -1, 999, 1_704_067_200_000, 1_717_171_717_171, 253_402_300_799_999, -62_135_596_800_000] {
            #expect(UnixMilliseconds.from(UnixMilliseconds.date(ms)) == ms)
            let date = UnixMilliseconds.date(ms)
            #expect(UnixMilliseconds.rounded(date) == date)
        }
        #expect(UnixMilliseconds.from(Date(timeIntervalSince1970: 1.000_4)) == 1_000)
        #expect(UnixMilliseconds.from(Date(timeIntervalSince1970: 1.000_6)) == 1_001)
    }
}
