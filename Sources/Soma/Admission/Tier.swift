/// A caller's service tier, as the gateway states it in `X-User-Tier`.
///
/// The tier decides the order in which waiting work is served (premium first, free last) and which
/// requests are shed first under overload (free first). `Comparable` follows `priority`, so
/// `Tier.premium > Tier.free`; `allCases` lists the tiers in serving order.
public enum Tier: String, CaseIterable, Codable, Sendable, Comparable {
    case premium
    case standard
    case free

    /// Serving priority: higher is served earlier (premium 2, standard 1, free 0).
    public var priority: Int {
        switch self {
        case .premium: 2
        case .standard: 1
        case .free: 0
        }
    }

    /// Parses a header value ("premium", "standard", "free") case-insensitively, ignoring surrounding
    /// spaces and tabs; `nil` for anything else, so the caller decides the fallback.
    public init?(header: some StringProtocol) {
        let isBlank: (Character) -> Bool = { $0 == " " || $0 == "\t" }
        guard let first = header.firstIndex(where: { !isBlank($0) }),
            let last = header.lastIndex(where: { !isBlank($0) })
        else { return nil }
        self.init(rawValue: header[first...last].lowercased())
    }

    public static func < (lhs: Tier, rhs: Tier) -> Bool { lhs.priority < rhs.priority }
}
