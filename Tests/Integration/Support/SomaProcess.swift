import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import Synchronization

/// A `soma serve` process of the build under test, on a free loopback port with its own state
/// directory: what the multi-instance integration and outage tests run (never an in-process
/// server, so instances share nothing but the real servers between them).
///
/// Foundation's `Process` rather than swift-subprocess here: swift-subprocess scopes a child to a
/// closure, while these servers live across a test's phases and are stopped, paused and killed by
/// signal from other tasks; `Process` gives that handle (SIGTERM and a wait in `stop()`,
/// SIGKILL in `deinit`).
final class SomaProcess: Sendable {
    let instance: String
    let port: Int
    let stateDirectory: URL
    private let process: Process
    private let log: URL

    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    /// The `soma` executable built next to the test bundle.
    static func binary() throws -> URL {
        var dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for _ in 0..<3 {
            let candidate = dir.appendingPathComponent("soma")
            if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
            dir = dir.deletingLastPathComponent()
        }
        let fallback = root.appendingPathComponent(".build/debug/soma")
        guard FileManager.default.isExecutableFile(atPath: fallback.path) else {
            throw ProcessFailure("the soma executable is not built (swift build --build-tests builds it)")
        }
        return fallback
    }

    /// Starts an instance and waits until it is ready; `openFiles` sets its descriptor limit
    /// (soft and hard, as `ulimit -n` does) through a shell that then execs soma.
    /// `stateDirectory`: one a stopped instance kept (`stop(keepingState: true)`), to start it again on its state.
    static func start(instance: String, environment: [String: String], openFiles: Int? = nil, stateDirectory: URL? = nil) async throws -> SomaProcess {
        let state =
            stateDirectory ?? FileManager.default.temporaryDirectory.appendingPathComponent("soma-it-\(instance)-\(UUID().uuidString)", isDirectory: true)
        try FileManager.default.createDirectory(at: state, withIntermediateDirectories: true)
        let log = state.appendingPathComponent("serve.log")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let process = Process()
        let arguments = [
            "serve", "--port", "0", "--instance-id", instance, "--state-dir", state.path,
            "--model-dir", root.appendingPathComponent("Fixtures/models").path,
        ]
        if let openFiles {
            process.executableURL = URL(fileURLWithPath: "/bin/sh")
            process.arguments = ["-c", "ulimit -n \(openFiles) && exec \"$0\" \"$@\"", try binary().path] + arguments
        } else {
            process.executableURL = try binary()
            process.arguments = arguments
        }
        var env = ProcessInfo.processInfo.environment
        env["SOMA_DRAIN_SECONDS"] = "0"
        env["SOMA_LOG_LEVEL"] = "info"
        env.removeValue(forKey: "SOMA_SLOWDOWN")
        for (k, v) in environment { env[k] = v }
        process.environment = env
        process.standardError = try FileHandle(forWritingTo: log)
        process.standardOutput = FileHandle.nullDevice
        try process.run()

        var port: Int?
        let clock = ContinuousClock()
        let end = clock.now + .seconds(60)
        while port == nil {
            let text = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
            if let range = text.range(of: "listening on 127.0.0.1:") {
                port = Int(text[range.upperBound...].prefix { $0.isNumber })
            }
            guard process.isRunning else { throw ProcessFailure("soma \(instance) exited before listening:\n\(text)") }
            guard clock.now < end else {
                process.terminate()
                throw ProcessFailure("soma \(instance) did not listen within 60 s:\n\(text)")
            }
            if port == nil { try await Task.sleep(for: .milliseconds(20)) }
        }
        let started = SomaProcess(instance: instance, port: port!, stateDirectory: state, process: process, log: log)
        for _ in 0..<500 {
            if (try? await started.request("GET", "/ready").status) == .ok { return started }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw ProcessFailure("soma \(instance) never became ready:\n\(started.logText)")
    }

    private init(instance: String, port: Int, stateDirectory: URL, process: Process, log: URL) {
        self.instance = instance
        self.port = port
        self.stateDirectory = stateDirectory
        self.process = process
        self.log = log
    }

    /// A test that throws before `stop()` must not leave its instance running.
    deinit {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            try? FileManager.default.removeItem(at: stateDirectory)
        }
    }

    var logText: String { (try? String(contentsOf: log, encoding: .utf8)) ?? "" }

    /// SIGTERM, wait for the exit, remove the state directory (unless `keepingState`); returns the exit status.
    @discardableResult
    func stop(keepingState: Bool = false) async -> Int32 {
        if process.isRunning {
            kill(process.processIdentifier, SIGTERM)
            for _ in 0..<1000 where process.isRunning { try? await Task.sleep(for: .milliseconds(10)) }
            if process.isRunning { process.terminate() }
        }
        let status = process.isRunning ? -1 : process.terminationStatus
        if status != 0 {
            // The test's expectation says only that the status was wrong; the log says why.
            let reason =
                process.isRunning ? "still running 10 s after SIGTERM" : process.terminationReason == .uncaughtSignal ? "signal \(status)" : "status \(status)"
            let tail = logText.split(separator: "\n", omittingEmptySubsequences: false).suffix(60).joined(separator: "\n")
            FileHandle.standardError.write(Data("soma \(instance) on port \(port): \(reason); the last lines of its log:\n\(tail)\n".utf8))
        }
        if !keepingState { try? FileManager.default.removeItem(at: stateDirectory) }
        return status
    }

    struct Reply: Sendable {
        var status: HTTPResponseStatus
        var headers: HTTPHeaders
        var body: [UInt8]

        var json: [String: Any] {
            (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any] ?? [:]
        }
        var text: String { String(decoding: body, as: UTF8.self) }
    }

    /// One request to this instance.
    func request(_ method: String, _ path: String, json: String? = nil, headers: [(String, String)] = [], timeout: Duration = .seconds(30)) async throws
        -> Reply
    {
        var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)\(path)")
        request.method = HTTPMethod(rawValue: method)
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        if let json {
            request.headers.add(name: "content-type", value: "application/json")
            request.body = .bytes(ByteBuffer(string: json))
        }
        let response = try await HTTPClient.shared.execute(request, timeout: .nanoseconds(Int64(timeout.components.seconds) * 1_000_000_000))
        let body = try await response.body.collect(upTo: 1 << 24)
        return Reply(status: response.status, headers: response.headers, body: Array(body.readableBytesView))
    }

    func analyze(_ text: String, user: String = "it-user", modules: [String]? = nil) async throws -> Reply {
        let escaped = String(data: try JSONSerialization.data(withJSONObject: [text]), encoding: .utf8)!.dropFirst().dropLast()
        let list = modules.map { ", \"modules\": [" + $0.map { "\"\($0)\"" }.joined(separator: ",") + "]" } ?? ""
        return try await request("POST", "/v1/analyze", json: "{\"text\": \(escaped)\(list)}", headers: [("X-User-Id", user)])
    }

    /// The value of one sample in `/metrics` (`name{labels}` exactly as exposed), nil when absent.
    func metric(_ sample: String) async throws -> Double? {
        let text = try await request("GET", "/metrics").text
        for line in text.split(separator: "\n") where line.hasPrefix(sample + " ") {
            return Double(line.dropFirst(sample.count + 1))
        }
        return nil
    }
}

struct ProcessFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
