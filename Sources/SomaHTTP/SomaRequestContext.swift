public import Hummingbird
public import Soma

/// Who a `/v1` request is for, as the gateway said (ARCHITECTURE §4 "Identity and tiers").
public struct Identity: Sendable, Hashable {
    public var user: String
    public var tier: Tier
}

/// The request context of every Soma route: Hummingbird's core context plus the request id and,
/// once the auth middleware has run, the caller's identity.
public struct SomaRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    /// `X-Request-Id` as received (when well-formed) or generated; echoed on every response.
    public var requestID: String = ""
    /// Set by the auth middleware on `/v1` routes.
    public var identity: Identity?
    /// Where the handler leaves the rate-limit decision, so that every answer after the request
    /// was counted (errors included) carries `RateLimit-*`.
    var rateLimit: RateLimitNote?

    public init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
    }
}
