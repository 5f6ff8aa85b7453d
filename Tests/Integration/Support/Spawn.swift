import Dispatch
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Runs helper scripts (`scripts/*.sh`) from async test code without blocking a cooperative thread.
///
/// `posix_spawn` + `waitpid` on a Dispatch thread rather than Foundation's `Process`: here `Process`
/// never reaped its child (no termination handler, a zombie child), and its children inherited the
/// signal mask of the spawning Dispatch thread (SIGTERM blocked). We reset the mask and dispositions.
/// Every harness (Redis, PostgreSQL) starts its server script through it.
enum Spawn {
    /// Failure to spawn, or a non-zero exit.
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// Whether the environment says we run under CI (`CI=true` or `CI=1`): a harness whose
    /// server cannot start then fails its suites instead of skipping them.
    static var isCI: Bool {
        let value = ProcessInfo.processInfo.environment["CI"]?.lowercased()
        return value == "true" || value == "1"
    }

    /// The package root, from this file's location (Tests/Integration/Support/Spawn.swift).
    static let packageRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// Runs `bash scripts/<script> arguments…` with this process's environment plus `environment`, its
    /// stdout and stderr in `directory/script.out` and `directory/script.err`; returns the KEY=VALUE lines
    /// it printed. Throws ``Failure`` (with the end of stderr) when it exits non-zero.
    static func runScript(
        _ script: String,
        _ arguments: [String],
        directory: String,
        environment extra: [String: String] = [:]
    ) async throws -> [String: String] {
        let path = packageRoot.appendingPathComponent("scripts/\(script)").path
        let outputPath = directory + "/script.out"
        let errorPath = directory + "/script.err"
        var environment = ProcessInfo.processInfo.environment
        environment.merge(extra) { _, new in new }
        let status = try await run(
            argv: ["/bin/bash", path] + arguments,
            environment: environment.map { "\($0.key)=\($0.value)" },
            stdout: outputPath,
            stderr: errorPath
        )
        let output = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
        let errors = (try? String(contentsOfFile: errorPath, encoding: .utf8)) ?? ""
        guard status == 0 else {
            throw Failure(description: "\(script) \(arguments.prefix(2).joined(separator: " ")) exited \(status): \(errors.suffix(2000))")
        }
        var values: [String: String] = [:]
        for line in output.split(separator: "\n") {
            guard let equals = line.firstIndex(of: "=") else { continue }
            values[String(line[..<equals])] = String(line[line.index(after: equals)...])
        }
        return values
    }

    /// Spawns `argv` and waits for it on a Dispatch thread; returns the exit status (128 + signal when killed).
    static func run(argv: [String], environment: [String], stdout: String, stderr: String) async throws -> Int32 {
        try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global().async {
                do {
                    let pid = try spawn(argv: argv, environment: environment, stdout: stdout, stderr: stderr)
                    var status: Int32 = 0
                    while waitpid(pid, &status, 0) == -1 {
                        guard errno == EINTR else { throw Failure(description: "waitpid: errno \(errno)") }
                    }
                    // WIFEXITED / WEXITSTATUS are macros Swift does not import.
                    let exited = status & 0x7F == 0
                    continuation.resume(returning: exited ? (status >> 8) & 0xFF : 128 + (status & 0x7F))
                } catch {
                    continuation.resume(throwing: error)
                }
            }
        }
    }

    /// `posix_spawn` with stdin from /dev/null, stdout/stderr to files, an empty signal mask and default
    /// signal dispositions.
    static func spawn(argv: [String], environment: [String], stdout: String, stderr: String) throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, stdout, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, stderr, O_WRONLY | O_CREAT | O_TRUNC, 0o644)

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attributes, &empty)
        var all = sigset_t()
        sigfillset(&all)
        posix_spawnattr_setsigdefault(&attributes, &all)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        let cArguments = argv.map { strdup($0) } + [nil]
        let cEnvironment = environment.map { strdup($0) } + [nil]
        defer {
            cArguments.forEach { free($0) }
            cEnvironment.forEach { free($0) }
        }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, argv[0], &actions, &attributes, cArguments, cEnvironment)
        guard result == 0 else { throw Failure(description: "posix_spawn \(argv[0]): error \(result)") }
        return pid
    }
}
