import Foundation
import Soma
import Testing

@Suite(.timeLimit(.minutes(1)))
struct ProcessStatsTests {
    /// CPU time is positive and grows with work (compared before and after, never absolutely).
    @Test func cpuSecondsGrowWithWork() throws {
        let before = try #require(ProcessStats.cpuSeconds())
        #expect(before > 0)
        var after = before
        var sink: UInt64 = 0
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: .seconds(5))
        // Spin until at least 5 ms of CPU time has been used (or give up after 5 s of wall time).
        while after - before < 0.005, clock.now < deadline {
            for k in 0..<100_000 { sink = sink &* 6_364_136_223_846_793_005 &+ UInt64(k) }
            after = try #require(ProcessStats.cpuSeconds())
        }
        #expect(sink != 1)
        #expect(after > before)
    }

    @Test func residentBytesAboveOneMegabyte() throws {
        let rss = try #require(ProcessStats.residentBytes())
        #expect(rss > 1 << 20)
    }

    @Test func openFileDescriptorsAreCounted() throws {
        let count = try #require(ProcessStats.openFileDescriptors())
        #expect(count > 0)
    }

    @Test func startTimeIsInThePast() throws {
        let start = try #require(ProcessStats.startTime())
        let now = Date().timeIntervalSince1970
        #expect(start <= now + 2)
        #expect(start > now - 24 * 3600)
    }

    /// The command name may hold spaces and parentheses: fields are read after the last ")".
    @Test func statLineSplitsAfterLastParenthesis() throws {
        let line = "4242 (my (odd) proc) name) S 1 4242 4242 0 -1 4194560 1000 0 0 0 123 45 0 0 20 0 8 0 98765 1000000 300\n"
        let fields = try #require(ProcessStats.statFields(line))
        #expect(fields[0] == "S")
        #expect(fields[11] == "123")
        #expect(fields[12] == "45")
        #expect(fields[19] == "98765")
        #expect(ProcessStats.statFields("no parenthesis here") == nil)
    }

    @Test func directoryBytesSumsFilesRecursively() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("soma-stats-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("nested"), withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        try Data(repeating: 1, count: 1234).write(to: dir.appendingPathComponent("a.db"))
        try Data(repeating: 2, count: 4321).write(to: dir.appendingPathComponent("a.db-wal"))
        #expect(ProcessStats.directoryBytes(dir) == 1234 + 4321)
        try Data(repeating: 3, count: 100).write(to: dir.appendingPathComponent("nested/b"))
        #expect(ProcessStats.directoryBytes(dir) == 1234 + 4321 + 100)
    }

    @Test func missingDirectoryIsZero() {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("soma-missing-\(UUID().uuidString)")
        #expect(ProcessStats.directoryBytes(dir) == 0)
    }
}
