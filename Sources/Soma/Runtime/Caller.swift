import Synchronization

/// Who a runtime call is for, as the front end established it (the gateway's `X-User-Id` and
/// `X-User-Tier` over HTTP; a fixed internal user for `soma warm-cache`).
///
/// It also carries the caller's rate-limit ledger: the runtime spends the budget and leaves the
/// decision here, so the front end can report it (`RateLimit-*`) on whatever answer follows.
public struct Caller: Sendable {
    public var user: String
    public var tier: Tier
    /// The last rate-limit decision taken for this caller's request.
    public let ledger = RateLimitLedger()

    public init(user: String, tier: Tier) {
        self.user = user
        self.tier = tier
    }
}

/// The rate-limit decision of one request, written by the runtime when it spends the budget and
/// read by the front end when the answer goes out.
public final class RateLimitLedger: Sendable {
    private let decision = Mutex<RateLimitDecision?>(nil)

    public init() {}

    public func record(_ d: RateLimitDecision) { decision.withLock { $0 = d } }

    public var recorded: RateLimitDecision? { decision.withLock { $0 } }
}

/// The runtime refused or could not finish a call: the one error type front ends map to their
/// answers (HTTP: 429, 503, 504, 500). Store failures stay `StoreError`.
public struct Refusal: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: String, Sendable, Equatable {
        /// The caller's budget or concurrency is spent (HTTP 429).
        case rateLimited
        /// The instance is overloaded or the work could not finish completely; retry later (503).
        case overloaded
        /// Not even the basic answer was possible before the deadline (504).
        case deadlineExceeded
        /// An internal failure; the message is for logs (500).
        case failed
        /// The caller's Idempotency-Key already names a write with a different body (422).
        case idempotencyKeyReused
    }

    public var kind: Kind
    /// Safe to show to the caller.
    public var message: String
    public var retryAfter: Duration?

    public init(_ kind: Kind, _ message: String, retryAfter: Duration? = nil) {
        self.kind = kind
        self.message = message
        self.retryAfter = retryAfter
    }

    public var description: String { "Refusal(\(kind.rawValue)): \(message)" }
}
