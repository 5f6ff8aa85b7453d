import Dispatch
import Foundation
import Synchronization
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Throwaway `redis-server` processes for integration tests, started through `scripts/redis-server.sh`
/// in a temporary directory.
///
/// Reuse:
/// - ``shared()`` is one server per test process, started on first use and never stopped by tests:
///   give your keys a distinct prefix (``keyPrefix(_:)``) and do not pause, stop or flush it.
/// - ``start(serverArguments:password:)`` gives a private server (a few hundred ms) for tests that
///   pause, stop or restart it, or need special settings (e.g. a password). Call ``shutdown()`` at the
///   end; `deinit` terminates it as a fallback.
/// - Every server is also watched by a detached watchdog (`REDIS_OWNER_PID`) that stops it and removes
///   its directory when the test process exits, even after a crash or Ctrl-C.
///
/// Availability policy: mark suites with ``Testing/Trait/requiresRedis``. Outside CI, when no
/// redis-server can be installed or started, the suite is *skipped* with that comment and the reason
/// is printed to stderr. Under `CI=true` the trait always enables the suite, so the same failure makes
/// the tests *fail* (``start(serverArguments:password:)`` throws).
final class RedisHarness: Sendable {
    /// Failure to run the script or to parse its output.
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// Always 127.0.0.1.
    let host = "127.0.0.1"
    /// The server's port; kept across ``restart()``.
    let port: Int
    /// The server's directory (logs, pid file, redis.env).
    let directory: String
    /// The `--requirepass` password, when the server has one.
    let password: String?
    private let state: Mutex<(pid: Int32, running: Bool)>

    /// The current server process id (changes on ``restart()``).
    var pid: Int32 { state.withLock { $0.pid } }

    /// `redis://[:password@]127.0.0.1:port`: what a client needs to connect.
    var url: String { url(password: password) }

    /// A URL for this server with any password (or none) and database.
    func url(password: String?, database: Int = 0) -> String {
        var text = "redis://"
        if let password {
            let encoded = password.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? password
            text += ":\(encoded)@"
        }
        text += "\(host):\(port)"
        if database != 0 { text += "/\(database)" }
        return text
    }

    /// A key prefix unique to the calling test and this run, e.g. `it:roundTrip:3f9a1c2e:`.
    static func keyPrefix(_ name: String = #function) -> String {
        let cleaned = name.prefix { $0 != "(" }.filter { $0.isLetter || $0.isNumber || $0 == "_" }
        return "it:\(cleaned):\(UUID().uuidString.prefix(8).lowercased()):"
    }

    // MARK: - Starting

    private static let sharedServer = Task { try await RedisHarness.start() }

    /// The per-process shared server (started once; a start failure is remembered and rethrown).
    static func shared() async throws -> RedisHarness {
        try await sharedServer.value
    }

    /// Starts a private server. `serverArguments` are passed to redis-server (after the script's own flags);
    /// `password` adds `--requirepass`.
    static func start(serverArguments: [String] = [], password: String? = nil) async throws -> RedisHarness {
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("soma-redis-\(UUID().uuidString.prefix(8).lowercased())").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        // The marker lets the watchdog delete the directory once this process is gone.
        _ = FileManager.default.createFile(atPath: directory + "/.soma-redis-throwaway", contents: nil)
        var arguments = serverArguments
        if let password { arguments += ["--requirepass", password] }
        do {
            let values = try await runScript(["start", directory] + arguments, directory: directory)
            guard let portText = values["REDIS_PORT"], let port = Int(portText),
                let pidText = values["REDIS_PID"], let pid = Int32(pidText)
            else { throw Failure(description: "redis-server.sh start printed no REDIS_PORT/REDIS_PID: \(values)") }
            return RedisHarness(port: port, pid: pid, directory: directory, password: password)
        } catch {
            try? FileManager.default.removeItem(atPath: directory)
            throw error
        }
    }

    private init(port: Int, pid: Int32, directory: String, password: String?) {
        self.port = port
        self.directory = directory
        self.password = password
        self.state = Mutex((pid, true))
    }

    deinit {
        let (pid, running) = state.withLock { $0 }
        if running {
            kill(pid, SIGTERM)
            kill(pid, SIGCONT)
        }
        try? FileManager.default.removeItem(atPath: directory)
    }

    // MARK: - Controlling

    /// Stops the server (SIGTERM by PID, waiting for the exit). The port stays reserved for ``restart()``.
    func stop() async throws {
        _ = try await Self.runScript(["stop", directory], directory: directory)
        state.withLock { $0.running = false }
    }

    /// Stops (if running) and starts the server again on the same port with the same arguments.
    func restart() async throws {
        try await stop()
        let values = try await Self.runScript(["start", directory], directory: directory)
        guard values["REDIS_PORT"] == String(port), let pidText = values["REDIS_PID"], let pid = Int32(pidText) else {
            throw Failure(description: "restart did not come back on port \(port): \(values)")
        }
        state.withLock { $0 = (pid, true) }
    }

    /// Freezes the server (SIGSTOP): connections stay open, nothing is answered.
    func pause() throws {
        guard kill(pid, SIGSTOP) == 0 else { throw Failure(description: "SIGSTOP \(pid): errno \(errno)") }
    }

    /// Thaws a paused server (SIGCONT).
    func resume() throws {
        guard kill(pid, SIGCONT) == 0 else { throw Failure(description: "SIGCONT \(pid): errno \(errno)") }
    }

    /// Stops the server and removes its directory. Do not use the harness afterwards.
    func shutdown() async {
        try? await stop()
        try? FileManager.default.removeItem(atPath: directory)
    }

    // MARK: - Script

    /// Runs `scripts/redis-server.sh` (through ``Spawn``: posix_spawn + waitpid, clean signal mask)
    /// with this process as the watchdog's owner; returns its KEY=VALUE lines.
    private static func runScript(_ arguments: [String], directory: String) async throws -> [String: String] {
        do {
            return try await Spawn.runScript(
                "redis-server.sh",
                arguments,
                directory: directory,
                environment: ["REDIS_OWNER_PID": String(getpid())]
            )
        } catch let failure as Spawn.Failure {
            throw Failure(description: failure.description)
        }
    }

    // MARK: - Availability

    /// Whether Redis suites should run: always under CI (so failures fail), else when the shared server starts.
    static func shouldRun() async -> Bool {
        if Spawn.isCI { return true }
        do {
            _ = try await shared()
            return true
        } catch {
            FileHandle.standardError.write(Data("RedisHarness: skipping Redis integration tests (not CI): \(error)\n".utf8))
            return false
        }
    }
}

extension Trait where Self == ConditionTrait {
    /// Enables a suite or test when a throwaway redis-server can be started; skips it otherwise,
    /// except under `CI=true`, where it stays enabled so that the failure is reported. See ``RedisHarness``.
    static var requiresRedis: Self {
        .enabled("redis-server could not be installed or started (skipped outside CI; fails under CI=true)") {
            await RedisHarness.shouldRun()
        }
    }
}
