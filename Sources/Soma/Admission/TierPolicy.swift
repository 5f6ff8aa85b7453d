/// The limits that apply to one tier's users: request rate, concurrency and request size.
///
/// One value per tier, held by a `TierPolicy`. The rate limiter reads `requestsPerWindow` and
/// `window`, the admission state machine reads `maxInFlightPerUser`, and the HTTP layer's body
/// checks read `maxTextBytes` and `maxBatchItems`, so every per-tier number lives in one place and
/// is configured once.
public struct TierLimits: Sendable, Hashable {
    /// Most request units (a batch counts as its number of items) a user may spend in any `window`.
    public var requestsPerWindow: Int
    /// Length of the sliding rate-limit window.
    public var window: Duration
    /// Most requests of one user admitted at once (running or waiting for a worker).
    public var maxInFlightPerUser: Int
    /// Largest text accepted in one request or one batch item, in UTF-8 bytes.
    public var maxTextBytes: Int
    /// Most items in one batch request.
    public var maxBatchItems: Int

    public init(
        requestsPerWindow: Int = 100,
        window: Duration = .seconds(60),
        maxInFlightPerUser: Int,
        maxTextBytes: Int,
        maxBatchItems: Int
    ) {
        precondition(requestsPerWindow >= 1, "requestsPerWindow must be at least 1")
        precondition(window > .zero, "window must be positive")
        precondition(maxInFlightPerUser >= 1, "maxInFlightPerUser must be at least 1")
        precondition(maxTextBytes >= 1, "maxTextBytes must be at least 1")
        precondition(maxBatchItems >= 1, "maxBatchItems must be at least 1")
        self.requestsPerWindow = requestsPerWindow
        self.window = window
        self.maxInFlightPerUser = maxInFlightPerUser
        self.maxTextBytes = maxTextBytes
        self.maxBatchItems = maxBatchItems
    }

    /// Premium defaults (docs/ARCHITECTURE.md §7): 100 per 60 s, 8 in flight, 64 KB, 64 batch items.
    public static let premiumDefault = TierLimits(maxInFlightPerUser: 8, maxTextBytes: 64 * 1024, maxBatchItems: 64)
    /// Standard defaults (docs/ARCHITECTURE.md §7): 100 per 60 s, 4 in flight, 32 KB, 32 batch items.
    public static let standardDefault = TierLimits(maxInFlightPerUser: 4, maxTextBytes: 32 * 1024, maxBatchItems: 32)
    /// Free defaults (docs/ARCHITECTURE.md §7): 100 per 60 s, 2 in flight, 16 KB, 8 batch items.
    public static let freeDefault = TierLimits(maxInFlightPerUser: 2, maxTextBytes: 16 * 1024, maxBatchItems: 8)
}

/// The limits of every tier: what a premium, standard or free user may do.
///
/// A plain configuration value, so the rate limiter, the admission state machine and the HTTP
/// layer can share one copy and tests can change a single number:
///
/// ```swift
/// var policy = TierPolicy()
/// policy[.free].requestsPerWindow = 20
/// policy[.free].maxInFlightPerUser   // 2, the default
/// ```
public struct TierPolicy: Sendable, Hashable {
    public var premium: TierLimits
    public var standard: TierLimits
    public var free: TierLimits

    /// The defaults of docs/ARCHITECTURE.md §7 unless told otherwise.
    public init(
        premium: TierLimits = .premiumDefault,
        standard: TierLimits = .standardDefault,
        free: TierLimits = .freeDefault
    ) {
        self.premium = premium
        self.standard = standard
        self.free = free
    }

    /// The defaults of docs/ARCHITECTURE.md §7.
    public static let `default` = TierPolicy()

    /// The limits of `tier`.
    public subscript(tier: Tier) -> TierLimits {
        get {
            switch tier {
            case .premium: premium
            case .standard: standard
            case .free: free
            }
        }
        set {
            switch tier {
            case .premium: premium = newValue
            case .standard: standard = newValue
            case .free: free = newValue
            }
        }
    }

    /// The limits of `tier` (the same as `self[tier]`).
    public func limits(for tier: Tier) -> TierLimits { self[tier] }

    /// The longest rate-limit window of any tier: how long a user's usage must be remembered even
    /// if their tier changes between requests.
    public var longestWindow: Duration {
        Tier.allCases.map { self[$0].window }.max() ?? .zero
    }
}
