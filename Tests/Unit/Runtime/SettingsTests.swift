import Foundation
import Soma
import SomaHTTP
import Testing

/// One parser for every setting: environment, env files and flags.
@Suite struct SettingsTests {
    @Test func flagsOverrideTheEnvironmentAndBlanksAreUnset() throws {
        let s = Settings(environment: ["SOMA_PORT": "9000", "INSTANCE_ID": "  ", "SOMA_BACKLOG": "16"], overrides: ["SOMA_PORT": "9100"])
        let http = try HTTPConfiguration(settings: s)
        #expect(http.port == 9100)
        #expect(http.backlog == 16)
        #expect(try RuntimeConfiguration(settings: s).instanceID == "soma-1")
    }

    @Test(arguments: [
        ("SOMA_PORT", "eighty"), ("SOMA_PORT", "70000"), ("SOMA_DB_POOL", "0"), ("SOMA_MODEL_PRECISION", "fp8"), ("SOMA_CACHE_SCOPE", "everyone"),
        ("SOMA_TIER_FREE_RPM", "-1"), ("SOMA_REDIS_TIMEOUT_MS", "0"), ("SOMA_LOG_LEVEL", "loud"),
    ])
    func aPresentButWrongValueIsAnErrorNamingIt(name: String, value: String) throws {
        let s = Settings(environment: [name: value])
        do {
            _ = try RuntimeConfiguration(settings: s)
            _ = try HTTPConfiguration(settings: s)
            _ = try s.choice("SOMA_LOG_LEVEL", ["info": 1, "debug": 2])
            Issue.record("\(name)=\(value) was accepted")
        } catch {
            // Typed throws: every parser fails with `Settings.Invalid`, naming the setting.
            #expect(error.name == name)
            #expect(error.value == value)
        }
    }

    @Test func runtimeSettingsReachTheirFields() throws {
        let s = Settings(environment: [
            "DATABASE_URL": "postgresql://soma:pw@127.0.0.1:5432/soma", "REDIS_URL": "redis://127.0.0.1:6379",
            "SOMA_TIER_FREE_RPM": "7", "SOMA_WORKERS": "3", "SOMA_DB_TIMEOUT_MS": "800", "SOMA_CACHE_SCOPE": "USER",
            "SOMA_MODEL_PRECISION": "native", "SOMA_STATE_DIR": "/var/lib/soma",
        ])
        let c = try RuntimeConfiguration(settings: s)
        #expect(c.storeKind == .postgres)
        #expect(c.redisURL == "redis://127.0.0.1:6379")
        #expect(c.tiers[.free].requestsPerWindow == 7)
        #expect(c.admission.policy[.free].requestsPerWindow == 7, "admission follows the tier table")
        #expect(c.admission.workers == 3)
        #expect(c.databaseTimeout == .milliseconds(800))
        #expect(c.databaseBreaker.slowCallDurationThreshold == .milliseconds(200))
        #expect(c.cacheScope == .user)
        #expect(c.modelPrecision == nil)
        #expect(c.stateDirectory.path == "/var/lib/soma")
        #expect(c.resolvedSQLitePath == "/var/lib/soma/soma.sqlite")
        #expect(try RuntimeConfiguration(settings: Settings(environment: [:])).storeKind == .sqlite)
    }

    @Test func unknownSomaNamesAreReportedAfterParsing() throws {
        let s = Settings(environment: ["SOMA_DB_POLL": "3", "SOMA_PORT": "1", "SOMA_STACK_DIR": "/x", "PATH": "/bin", "DATABASE_URL": "postgresql://h/db"])
        _ = try RuntimeConfiguration(settings: s)
        _ = try HTTPConfiguration(settings: s)
        #expect(s.unknownNames == ["SOMA_DB_POLL"])
    }

    @Test func envFilesAsAContainerRuntimeReadsThem() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("soma-\(UUID().uuidString).env")
        defer { try? FileManager.default.removeItem(at: file) }
        try """
        # a comment
        export SOMA_PORT=9200
        SOMA_ADMIN_TOKEN="quoted secret"
        REDIS_URL='redis://:pw@127.0.0.1:6379/2'

        not a setting line
        """.write(to: file, atomically: true, encoding: .utf8)
        let s = try Settings.load(environmentFile: file.path, over: ["SOMA_PORT": "1", "SOMA_BACKLOG": "8"])
        let http = try HTTPConfiguration(settings: s)
        #expect(http.port == 9200, "the file wins over the environment beneath it")
        #expect(http.backlog == 8)
        #expect(http.adminToken == "quoted secret")
        #expect(try RuntimeConfiguration(settings: s).redisURL == "redis://:pw@127.0.0.1:6379/2")
        #expect(Settings.display("SOMA_ADMIN_TOKEN", "quoted secret") == "<redacted>")
        #expect(throws: Settings.Invalid.self) { try Settings.load(environmentFile: file.path + ".missing") }
    }
}

/// Authentication cannot be turned off by accident.
@Suite struct StartupRefusalTests {
    @Test(arguments: ["", "   ", "\t"])
    func aBlankTokenIsAnErrorNotNoToken(value: String) throws {
        #expect(throws: Settings.Invalid.self) { try HTTPConfiguration(settings: Settings(environment: ["SOMA_SERVICE_TOKEN": value])) }
        #expect(throws: Settings.Invalid.self) { try HTTPConfiguration(settings: Settings(environment: ["SOMA_ADMIN_TOKEN": value])) }
    }

    @Test func noTokenOnANonLoopbackAddressRefusesToStart() throws {
        func refusal(_ env: [String: String]) throws -> String? { try HTTPConfiguration(settings: Settings(environment: env)).startupRefusal }
        #expect(try refusal(["SOMA_HOST": "0.0.0.0"]) != nil)
        #expect(try refusal(["SOMA_HOST": "192.0.2.7"]) != nil)
        #expect(try refusal(["SOMA_HOST": "::"]) != nil)
        // Loopback, a token, or the explicit switch: allowed.
        for host in ["127.0.0.1", "127.1.2.3", "localhost", "::1", "[::1]"] {
            #expect(try refusal(["SOMA_HOST": host]) == nil, "\(host)")
        }
        #expect(try refusal([:]) == nil, "the default (make run) stays one command on 127.0.0.1")
        #expect(try refusal(["SOMA_HOST": "0.0.0.0", "SOMA_SERVICE_TOKEN": "s3cret"]) == nil)
        #expect(try refusal(["SOMA_HOST": "0.0.0.0", "SOMA_ALLOW_UNAUTHENTICATED": "1"]) == nil)
        #expect(try refusal(["SOMA_HOST": "0.0.0.0", "SOMA_ALLOW_UNAUTHENTICATED": "no"]) != nil)
        #expect(throws: Settings.Invalid.self) { try refusal(["SOMA_ALLOW_UNAUTHENTICATED": "maybe"]) }
    }
}
