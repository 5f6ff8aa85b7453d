import Soma

/// Direct commands to a test's redis-server, through the project's own client.
enum RedisClientForTests {
    /// Runs one command and returns its reply as text (status, bulk or integer).
    static func command(_ url: String, _ args: [RedisValue]) async throws -> String? {
        let client = try RedisClient(url: url, poolSize: 1, connectTimeout: .seconds(2), commandTimeout: .seconds(2))
        defer { client.close() }
        let reply = try await client.command(args)
        return reply.string ?? reply.int.map { String($0) } ?? reply.errorMessage
    }

    /// How many times the server ran `name` (from INFO commandstats), 0 when never.
    static func commandCount(_ url: String, _ name: String) async throws -> Int {
        let info = try await command(url, ["INFO", "commandstats"]) ?? ""
        for line in info.split(whereSeparator: \.isNewline) where line.hasPrefix("cmdstat_\(name):") {
            if let calls = line.split(separator: ",").first?.split(separator: "=").last, let n = Int(calls) { return n }
        }
        return 0
    }
}
