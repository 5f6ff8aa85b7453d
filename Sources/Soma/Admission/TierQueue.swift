/// The queue that waiting work is served from: premium before standard before free, first come first
/// served within a tier.
///
/// A plain value with no I/O and no clock, so the session manager can keep it under
/// their own lock and every ordering rule can be tested on its own. Each `enqueue` returns a ticket,
/// a `UInt64` that grows with every call; the ticket names the element for `remove(ticket:)` (a
/// cancelled or timed-out request) and for `shedCandidate()` (what to drop under overload).
///
/// Cost: `enqueue` and `dequeue` are O(1) amortised; `remove(ticket:)` is O(log n) (tickets within
/// a tier are sorted, so it is a binary search) and leaves a hole that the next `dequeue` skips.
///
/// ```swift
/// var queue = TierQueue<String>()
/// queue.enqueue("a", tier: .free)
/// let late = queue.enqueue("b", tier: .premium)
/// queue.dequeue()?.element      // "b": premium first
/// queue.remove(ticket: late)    // nil: already taken
/// ```
public struct TierQueue<Element> {
    /// One dequeued element with the ticket it was enqueued under and its tier.
    public typealias Entry = (ticket: UInt64, tier: Tier, element: Element)

    /// One lane per tier, in serving order (`Tier.allCases`).
    private var lanes: [Lane] = Array(repeating: Lane(), count: Tier.allCases.count)
    private var nextTicket: UInt64 = 0

    /// Number of elements waiting, over all tiers.
    public private(set) var count = 0

    public init() {}

    public var isEmpty: Bool { count == 0 }

    /// Number of elements waiting in `tier`.
    public func count(tier: Tier) -> Int { lanes[tier.lane].count }

    /// The tier the next `dequeue()` takes from, `nil` when empty.
    public var peekTier: Tier? {
        lanes.firstIndex { $0.count > 0 }.map { Tier.servingOrder[$0] }
    }

    /// The oldest element of `tier` (the one `dequeue` would take next from that tier).
    public func peek(tier: Tier) -> (ticket: UInt64, element: Element)? { lanes[tier.lane].first }

    /// Adds `element` at the back of its tier and returns its ticket.
    @discardableResult
    public mutating func enqueue(_ element: Element, tier: Tier) -> UInt64 {
        let ticket = nextTicket
        nextTicket += 1
        lanes[tier.lane].append(ticket: ticket, element: element)
        count += 1
        return ticket
    }

    /// Takes the front element: the oldest of the highest non-empty tier.
    public mutating func dequeue() -> Entry? {
        for index in lanes.indices where lanes[index].count > 0 {
            guard let (ticket, element) = lanes[index].popFirst() else { continue }
            count -= 1
            return (ticket, Tier.servingOrder[index], element)
        }
        return nil
    }

    /// Takes up to `max` elements from the front, in serving order.
    public mutating func dequeue(max: Int) -> [Entry] {
        precondition(max >= 0, "dequeue(max:) needs a non-negative count")
        var taken: [Entry] = []
        taken.reserveCapacity(Swift.min(max, count))
        while taken.count < max, let entry = dequeue() { taken.append(entry) }
        return taken
    }

    /// Removes the element enqueued under `ticket`, wherever it waits; `nil` when it is no longer
    /// queued (taken, removed, or never issued).
    public mutating func remove(ticket: UInt64) -> Element? {
        for index in lanes.indices {
            if let element = lanes[index].remove(ticket: ticket) {
                count -= 1
                return element
            }
        }
        return nil
    }

    /// The ticket to shed first under overload: the newest element of the lowest non-empty tier.
    ///
    /// Newest rather than oldest because the oldest has already waited longest and is closest to
    /// being served; dropping it would waste that wait.
    public func shedCandidate() -> UInt64? {
        for lane in lanes.reversed() where lane.count > 0 {
            return lane.lastTicket
        }
        return nil
    }
}

extension TierQueue: Sendable where Element: Sendable {}
extension TierQueue.Lane: Sendable where Element: Sendable {}
extension TierQueue.Lane.Slot: Sendable where Element: Sendable {}

extension TierQueue {
    /// FIFO storage of one tier: an array with a head index, so popping the front is O(1).
    ///
    /// Removed elements leave a hole (`element == nil`) that keeps its ticket, so the tickets stay
    /// sorted and `remove(ticket:)` can binary-search. Invariant: when `count > 0` the slots at
    /// `head` and at the end hold elements; when `count == 0` there are no slots and `head == 0`.
    /// The consumed prefix is cut off once it is at least half of the array, which keeps both the
    /// memory and the amortised cost bounded.
    fileprivate struct Lane {
        struct Slot {
            let ticket: UInt64
            var element: Element?
        }

        private var slots: [Slot] = []
        private var head = 0
        private(set) var count = 0

        var first: (ticket: UInt64, element: Element)? {
            guard count > 0, let element = slots[head].element else { return nil }
            return (slots[head].ticket, element)
        }

        var lastTicket: UInt64? { count > 0 ? slots[slots.count - 1].ticket : nil }

        mutating func append(ticket: UInt64, element: Element) {
            slots.append(Slot(ticket: ticket, element: element))
            count += 1
        }

        mutating func popFirst() -> (UInt64, Element)? {
            guard count > 0, let element = slots[head].element else { return nil }
            let ticket = slots[head].ticket
            slots[head].element = nil
            count -= 1
            head += 1
            restoreInvariant()
            return (ticket, element)
        }

        mutating func remove(ticket: UInt64) -> Element? {
            guard count > 0, slots[head].ticket <= ticket, ticket <= slots[slots.count - 1].ticket else {
                return nil
            }
            var low = head
            var high = slots.count
            while low < high {
                let middle = low + (high - low) / 2
                if slots[middle].ticket < ticket { low = middle + 1 } else { high = middle }
            }
            guard low < slots.count, slots[low].ticket == ticket, let element = slots[low].element else {
                return nil
            }
            slots[low].element = nil
            count -= 1
            restoreInvariant()
            return element
        }

        private mutating func restoreInvariant() {
            guard count > 0 else {
                slots.removeAll(keepingCapacity: slots.count <= 1024)
                head = 0
                return
            }
            while slots[head].element == nil { head += 1 }
            while slots[slots.count - 1].element == nil { slots.removeLast() }
            if head >= 32, head * 2 >= slots.count {
                slots.removeSubrange(0..<head)
                head = 0
            }
        }
    }
}

extension Tier {
    /// `Tier.allCases` as a stored array, for indexing lanes without rebuilding it.
    static let servingOrder: [Tier] = Tier.allCases

    /// Index of this tier's lane in a `TierQueue` (0 = served first).
    var lane: Int {
        switch self {
        case .premium: 0
        case .standard: 1
        case .free: 2
        }
    }
}
