import Foundation
import Subprocess
import SystemPackage

/// Runs helper scripts (`scripts/*.sh`) and short commands from async test code, through
/// swift-subprocess: the child is reaped and starts with default signal dispositions and an empty
/// mask (Foundation's `Process` here left zombies and passed on the spawning thread's blocked
/// SIGTERM). Every harness (Redis, PostgreSQL) starts its server script through it.
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

    /// Runs `argv` to completion with swift-subprocess (stdin from /dev/null, stdout and stderr to
    /// files, default signal dispositions and an empty signal mask in the child, the child reaped);
    /// returns the exit status (128 + signal when killed).
    static func run(argv: [String], environment: [String], stdout: String, stderr: String) async throws -> Int32 {
        let options: FileDescriptor.OpenOptions = [.create, .truncate]
        let out = try FileDescriptor.open(FilePath(stdout), .writeOnly, options: options, permissions: [.ownerReadWrite, .groupRead, .otherRead])
        let err = try FileDescriptor.open(FilePath(stderr), .writeOnly, options: options, permissions: [.ownerReadWrite, .groupRead, .otherRead])
        var variables: [Environment.Key: String] = [:]
        for pair in environment {
            guard let equals = pair.firstIndex(of: "="), let key = Environment.Key(rawValue: String(pair[..<equals])) else { continue }
            variables[key] = String(pair[pair.index(after: equals)...])
        }
        let result = try await Subprocess.run(
            .path(FilePath(argv[0])), arguments: Arguments(Array(argv.dropFirst())),
            environment: .custom(variables),
            output: .fileDescriptor(out, closeAfterSpawningProcess: true),
            error: .fileDescriptor(err, closeAfterSpawningProcess: true)
        )
        switch result.terminationStatus {
        case .exited(let code): return code
        case .signaled(let signal): return 128 + signal
        }
    }
}
