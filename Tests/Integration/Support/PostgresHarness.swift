import Foundation
import Synchronization
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Throwaway PostgreSQL servers for integration tests, started through `scripts/postgres-server.sh` in a
/// temporary directory (trust authentication, superuser `soma`, database `soma`, 127.0.0.1 only).
///
/// Reuse:
/// - ``shared()`` is one server per test process, started on first use and never stopped by tests: give
///   your tables a distinct name (``tableName(_:)``) and do not pause, stop or restart it.
/// - ``start()`` gives a private server (initdb + start, about 2 s) for tests that pause, stop or restart it.
///   Call ``shutdown()`` at the end; `deinit` stops it as a fallback.
/// - Every server is also watched by a detached watchdog (`POSTGRES_OWNER_PID`) that stops it and removes its
///   directory when the test process exits, even after a crash or Ctrl-C.
///
/// Availability policy: mark suites with ``Testing/Trait/requiresPostgres``. Outside CI, when no PostgreSQL
/// can be installed or started, the suite is *skipped* with that comment and the reason is printed to stderr.
/// Under `CI=true` the trait always enables the suite, so the same failure makes the tests *fail*
/// (``start()`` throws).
final class PostgresHarness: Sendable {
    /// Failure to run the script, to parse its output, or to signal the server.
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// Always 127.0.0.1.
    let host = "127.0.0.1"
    /// The server's port; kept across ``restart()``.
    let port: Int
    /// The server's directory (data, log, postgres.env).
    let directory: String
    private let state: Mutex<(pid: Int32, running: Bool)>

    /// The current postmaster process id (changes on ``restart()``).
    var pid: Int32 { state.withLock { $0.pid } }

    /// `postgresql://soma@127.0.0.1:port/soma`: what a client needs to connect.
    var url: String { "postgresql://soma@\(host):\(port)/soma" }

    /// A table name unique to the calling test and this run, e.g. `it_roundtrip_3f9a1c2e`.
    static func tableName(_ name: String = #function) -> String {
        let cleaned = name.prefix { $0 != "(" }.lowercased().filter { ($0.isASCII && $0.isLetter) || $0.isNumber || $0 == "_" }
        return "it_\(cleaned.prefix(40))_\(UUID().uuidString.prefix(8).lowercased())"
    }

    // MARK: - Starting

    private static let sharedServer = Task { try await PostgresHarness.start() }

    /// The per-process shared server (started once; a start failure is remembered and rethrown).
    static func shared() async throws -> PostgresHarness {
        try await sharedServer.value
    }

    /// Starts a private server.
    static func start() async throws -> PostgresHarness {
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("soma-postgres-\(UUID().uuidString.prefix(8).lowercased())").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        // The marker lets the watchdog delete the directory once this process is gone.
        _ = FileManager.default.createFile(atPath: directory + "/.soma-postgres-throwaway", contents: nil)
        do {
            let values = try await runScript(["start", directory], directory: directory)
            guard let portText = values["POSTGRES_PORT"], let port = Int(portText),
                let pidText = values["POSTGRES_PID"], let pid = Int32(pidText)
            else { throw Failure(description: "postgres-server.sh start printed no POSTGRES_PORT/POSTGRES_PID: \(values)") }
            return PostgresHarness(port: port, pid: pid, directory: directory)
        } catch {
            try? FileManager.default.removeItem(atPath: directory)
            throw error
        }
    }

    private init(port: Int, pid: Int32, directory: String) {
        self.port = port
        self.directory = directory
        self.state = Mutex((pid, true))
    }

    deinit {
        let (pid, running) = state.withLock { $0 }
        if running {
            // SIGINT is PostgreSQL's fast shutdown; thaw everything first in case it is paused.
            for child in Self.children(of: pid) { kill(child, SIGCONT) }
            kill(pid, SIGCONT)
            kill(pid, SIGINT)
        }
        // The watchdog removes the directory once this process exits; the server may still be writing to it.
    }

    // MARK: - Controlling

    /// Stops the server (`pg_ctl stop -m fast`, waiting for the exit). Port and data stay for ``restart()``.
    func stop() async throws {
        _ = try await Self.runScript(["stop", directory], directory: directory)
        state.withLock { $0.running = false }
    }

    /// Stops (if running) and starts the server again on the same port with the same data.
    func restart() async throws {
        try await stop()
        let values = try await Self.runScript(["start", directory], directory: directory)
        guard values["POSTGRES_PORT"] == String(port), let pidText = values["POSTGRES_PID"], let pid = Int32(pidText) else {
            throw Failure(description: "restart did not come back on port \(port): \(values)")
        }
        state.withLock { $0 = (pid, true) }
    }

    /// Freezes the server: SIGSTOP to the postmaster and then to each of its children (the backends and
    /// auxiliary processes), by PID. Connections stay open; nothing is answered, new connections hang.
    func pause() throws {
        let pid = self.pid
        guard kill(pid, SIGSTOP) == 0 else { throw Failure(description: "SIGSTOP \(pid): errno \(errno)") }
        // The postmaster is stopped first, so it forks no new child after the scan.
        for child in Self.children(of: pid) { kill(child, SIGSTOP) }
    }

    /// Thaws a paused server: SIGCONT to the children and then to the postmaster.
    func resume() throws {
        let pid = self.pid
        for child in Self.children(of: pid) { kill(child, SIGCONT) }
        guard kill(pid, SIGCONT) == 0 else { throw Failure(description: "SIGCONT \(pid): errno \(errno)") }
    }

    /// Stops the server and removes its directory. Do not use the harness afterwards.
    func shutdown() async {
        try? await stop()
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// The PIDs whose parent is `parent`, from /proc/<pid>/stat (field 4, after the parenthesised name).
    static func children(of parent: Int32) -> [Int32] {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [] }
        var result: [Int32] = []
        for entry in entries {
            guard let pid = Int32(entry),
                let stat = try? String(contentsOfFile: "/proc/\(entry)/stat", encoding: .utf8),
                let close = stat.lastIndex(of: ")")
            else { continue }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            // fields[0] is the state, fields[1] the parent PID; skip zombies.
            if fields.count > 1, fields[0] != "Z", fields[0] != "X", Int32(fields[1]) == parent { result.append(pid) }
        }
        return result
    }

    // MARK: - Script

    private static func runScript(_ arguments: [String], directory: String) async throws -> [String: String] {
        try await Spawn.runScript(
            "postgres-server.sh",
            arguments,
            directory: directory,
            environment: ["POSTGRES_OWNER_PID": String(getpid())]
        )
    }

    // MARK: - Availability

    /// Whether PostgreSQL suites should run: always under CI (so failures fail), else when the shared server starts.
    static func shouldRun() async -> Bool {
        if Spawn.isCI { return true }
        do {
            _ = try await shared()
            return true
        } catch {
            FileHandle.standardError.write(Data("PostgresHarness: skipping PostgreSQL integration tests (not CI): \(error)\n".utf8))
            return false
        }
    }
}

extension Trait where Self == ConditionTrait {
    /// Enables a suite or test when a throwaway PostgreSQL server can be started; skips it otherwise, except
    /// under `CI=true`, where it stays enabled so that the failure is reported. See ``PostgresHarness``.
    static var requiresPostgres: Self {
        .enabled("PostgreSQL could not be installed or started (skipped outside CI; fails under CI=true)") {
            await PostgresHarness.shouldRun()
        }
    }
}
