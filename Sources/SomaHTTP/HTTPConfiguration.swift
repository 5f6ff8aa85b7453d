import Foundation
public import Soma

/// What the HTTP layer itself is told: where to listen, the tokens, and the caps on what a request
/// may carry. Everything else is the runtime's (`RuntimeConfiguration`). Read through the same
/// `Settings` (docs/ARCHITECTURE.md §6).
public struct HTTPConfiguration: Sendable {
    /// `--host` (127.0.0.1).
    public var host = "127.0.0.1"
    /// `SOMA_PORT` or `--port` (8788; 0 picks a free one).
    public var port = 8788
    /// Listen backlog (`SOMA_BACKLOG`, 4096: the default 256 overflows at 1000+ connections).
    public var backlog = 4096
    /// `SOMA_SERVICE_TOKEN`: with it, /v1 needs `Authorization: Bearer <token>`; without, auth is off.
    public var serviceToken: String?
    /// `SOMA_ADMIN_TOKEN`: /admin needs it; without it, /admin is refused (403).
    public var adminToken: String?
    /// `SOMA_ALLOW_UNAUTHENTICATED` (false): serve without a service token on an address other than
    /// loopback. Without it such a configuration refuses to start: anyone who can reach the port
    /// could claim any user id.
    public var allowUnauthenticated = false
    /// Largest request body (`SOMA_MAX_BODY_BYTES`, default 256 KiB).
    public var maxBodyBytes = 256 * 1024
    /// `SOMA_DEADLINE_MS` (default 1000) and the cap on `X-Request-Deadline-Ms` (`SOMA_MAX_DEADLINE_MS`, 10000).
    public var defaultDeadline: Duration = .seconds(1)
    public var maxDeadline: Duration = .seconds(10)
    /// How long /ready answers 503 before the server stops accepting (`SOMA_DRAIN_SECONDS`, 1), so a
    /// load balancer notices before connections are refused.
    public var drainDelay: Duration = .seconds(1)
    /// Header, body and idle timeouts and the connection cap (`SOMA_HEADER_TIMEOUT_MS`,
    /// `SOMA_BODY_TIMEOUT_MS`, `SOMA_IDLE_TIMEOUT_MS`, `SOMA_MAX_CONNECTIONS`).
    public var connections = ConnectionLimits()
    /// Invalid requests (400, 413, 415, 422) one user may make per minute before all their
    /// requests are refused with 429 for the rest of the minute (`SOMA_INVALID_REQUESTS_PER_MINUTE`, 60).
    public var invalidRequestsPerMinute = 60

    public init() {}

    /// Reads every setting (names as documented on each property).
    public init(settings s: Settings) throws(Settings.Invalid) {
        if let v = s.string("SOMA_HOST") { host = v }
        if let n = try s.int("SOMA_PORT", max: 65535) { port = n }
        if let n = try s.int("SOMA_BACKLOG", min: 1) { backlog = n }
        serviceToken = try s.token("SOMA_SERVICE_TOKEN")
        adminToken = try s.token("SOMA_ADMIN_TOKEN")
        if let allow = try s.bool("SOMA_ALLOW_UNAUTHENTICATED") { allowUnauthenticated = allow }
        if let n = try s.int("SOMA_MAX_BODY_BYTES", min: 1) { maxBodyBytes = n }
        if let d = try s.milliseconds("SOMA_DEADLINE_MS") { defaultDeadline = d }
        if let d = try s.milliseconds("SOMA_MAX_DEADLINE_MS") { maxDeadline = d }
        if let d = try s.seconds("SOMA_DRAIN_SECONDS", min: 0) { drainDelay = d }
        if let d = try s.milliseconds("SOMA_HEADER_TIMEOUT_MS") { connections.headerTimeout = d }
        if let d = try s.milliseconds("SOMA_BODY_TIMEOUT_MS") { connections.bodyTimeout = d }
        if let d = try s.milliseconds("SOMA_IDLE_TIMEOUT_MS") { connections.idleTimeout = d }
        if let n = try s.int("SOMA_MAX_CONNECTIONS", min: 1) { connections.maxConnections = n }
        if let n = try s.int("SOMA_INVALID_REQUESTS_PER_MINUTE", min: 1) { invalidRequestsPerMinute = n }
    }

    /// Whether `host` names this machine only (127.0.0.0/8, ::1, localhost).
    public static func isLoopback(_ host: String) -> Bool {
        let h = host.lowercased().trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
        return h == "localhost" || h == "::1" || h.hasPrefix("127.")
    }

    /// Why this configuration must not serve, if it must not: no service token on a non-loopback
    /// address without the explicit switch.
    public var startupRefusal: String? {
        guard serviceToken == nil, !allowUnauthenticated, !Self.isLoopback(host) else { return nil }
        return "no SOMA_SERVICE_TOKEN while listening on \(host): anyone reaching the port could act as any user. "
            + "Set SOMA_SERVICE_TOKEN, listen on 127.0.0.1, or set SOMA_ALLOW_UNAUTHENTICATED=1 to accept the risk"
    }
}
