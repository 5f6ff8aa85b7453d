import Foundation
import Testing

/// `soma config check --env-file` on the built binary: what a deployment's settings get before
/// any instance starts.
@Suite("CLI: config check") struct ConfigCheckTests {
    private func check(_ lines: [String]) async throws -> (status: Int32, output: String) {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("soma-config-\(UUID().uuidString)", isDirectory: true)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("soma.env")
        try (lines.joined(separator: "\n") + "\n").write(to: file, atomically: true, encoding: .utf8)
        let out = dir.appendingPathComponent("out").path
        let status = try await Spawn.run(
            argv: [try SomaProcess.binary().path, "config", "check", "--env-file", file.path], environment: ["PATH=/usr/bin:/bin"],
            stdout: out, stderr: out + ".err")
        let output = [out, out + ".err"].compactMap { try? String(contentsOfFile: $0, encoding: .utf8) }.joined()
        return (status, output)
    }

    @Test func aGoodFileIsAcceptedWithSecretsRedacted() async throws {
        let result = try await check(["SOMA_HOST=0.0.0.0", "SOMA_SERVICE_TOKEN=s3cret", "DATABASE_URL=postgresql://soma:hunter2@db:5432/soma"])
        #expect(result.status == 0, "\(result.output)")
        #expect(result.output.contains("config: ok"))
        #expect(!result.output.contains("hunter2") && !result.output.contains("s3cret"))
    }

    @Test(arguments: [
        (["SOMA_HOST=0.0.0.0"], "SOMA_SERVICE_TOKEN"),
        (["SOMA_SERVICE_TOKEN=  "], "SOMA_SERVICE_TOKEN"),
        (["SOMA_DB_POLL=4"], "SOMA_DB_POLL"),
        (["SOMA_PORT=http"], "SOMA_PORT"),
    ])
    func aBadFileFailsNamingTheSetting(lines: [String], name: String) async throws {
        let result = try await check(lines)
        #expect(result.status != 0)
        #expect(result.output.contains(name), "\(result.output)")
    }
}
