import Soma
import Testing

struct TierQueueTests {
    @Test(.timeLimit(.minutes(1)))
    func tiersParseAndOrder() {
        #expect(Tier(header: "premium") == .premium)
        #expect(Tier(header: "Standard") == .standard)
        #expect(Tier(header: " FREE ") == .free)
        #expect(Tier(header: "gold") == nil)
        #expect(Tier(header: "") == nil)
        #expect(Tier.premium > Tier.standard && Tier.standard > Tier.free)
        #expect(Tier.allCases.map(\.priority) == [2, 1, 0])
        #expect(Tier.allCases.sorted(by: >) == Tier.allCases)
    }

    @Test(.timeLimit(.minutes(1)))
    func premiumFirstThenArrivalOrderWithinTier() {
        var queue = TierQueue<String>()
        queue.enqueue("free-1", tier: .free)
        queue.enqueue("standard-1", tier: .standard)
        queue.enqueue("premium-1", tier: .premium)
        queue.enqueue("free-2", tier: .free)
        queue.enqueue("premium-2", tier: .premium)
        queue.enqueue("standard-2", tier: .standard)

        var order: [String] = []
        var tiers: [Tier] = []
        while let entry = queue.dequeue() {
            order.append(entry.element)
            tiers.append(entry.tier)
        }
        #expect(order == ["premium-1", "premium-2", "standard-1", "standard-2", "free-1", "free-2"])
        #expect(tiers == [.premium, .premium, .standard, .standard, .free, .free])
        #expect(queue.isEmpty)
        #expect(queue.dequeue() == nil)
    }

    @Test(.timeLimit(.minutes(1)))
    func ticketsIncreaseAndNameTheirElements() {
        var queue = TierQueue<Int>()
        let tickets = (0..<10).map { queue.enqueue($0, tier: Tier.allCases[$0 % 3]) }
        #expect(tickets == tickets.sorted())
        #expect(Set(tickets).count == tickets.count)
        while let entry = queue.dequeue() {
            #expect(tickets[entry.element] == entry.ticket)
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func dequeueMaxTakesFromTheHeadInPriorityOrder() {
        var queue = TierQueue<String>()
        queue.enqueue("f1", tier: .free)
        queue.enqueue("s1", tier: .standard)
        queue.enqueue("p1", tier: .premium)
        queue.enqueue("s2", tier: .standard)

        #expect(queue.dequeue(max: 3).map(\.element) == ["p1", "s1", "s2"])
        #expect(queue.count == 1)
        #expect(queue.dequeue(max: 0).isEmpty)
        #expect(queue.dequeue(max: 5).map(\.element) == ["f1"])
        #expect(queue.dequeue(max: 5).isEmpty)
    }

    @Test(.timeLimit(.minutes(1)))
    func removeByTicket() {
        var queue = TierQueue<String>()
        let a = queue.enqueue("a", tier: .standard)
        let b = queue.enqueue("b", tier: .standard)
        let c = queue.enqueue("c", tier: .standard)
        let p = queue.enqueue("p", tier: .premium)

        #expect(queue.remove(ticket: b) == "b")
        #expect(queue.remove(ticket: b) == nil, "a ticket is removed once")
        #expect(queue.remove(ticket: 999) == nil, "unknown tickets are ignored")
        #expect(queue.count == 3)
        #expect(queue.count(tier: .standard) == 2)

        #expect(queue.remove(ticket: p) == "p")
        #expect(queue.peekTier == .standard)
        #expect(queue.remove(ticket: a) == "a", "the head can be removed")
        #expect(queue.peek(tier: .standard)?.element == "c")
        #expect(queue.dequeue()?.ticket == c)
        #expect(queue.remove(ticket: c) == nil, "a taken element cannot be removed")
        #expect(queue.isEmpty)
    }

    @Test(.timeLimit(.minutes(1)))
    func shedCandidateIsTheNewestOfTheLowestTier() throws {
        var queue = TierQueue<String>()
        #expect(queue.shedCandidate() == nil)
        let premium = queue.enqueue("p", tier: .premium)
        #expect(queue.shedCandidate() == premium)
        _ = queue.enqueue("s1", tier: .standard)
        let standardNewest = queue.enqueue("s2", tier: .standard)
        #expect(queue.shedCandidate() == standardNewest)
        _ = queue.enqueue("f1", tier: .free)
        let freeNewest = queue.enqueue("f2", tier: .free)
        _ = queue.enqueue("p2", tier: .premium)
        #expect(queue.shedCandidate() == freeNewest)

        // Shedding repeatedly walks back through the free tier, then moves up.
        #expect(queue.remove(ticket: freeNewest) == "f2")
        let next = try #require(queue.shedCandidate())
        #expect(queue.remove(ticket: next) == "f1")
        #expect(queue.shedCandidate() == standardNewest)
    }

    @Test(.timeLimit(.minutes(1)))
    func countsPerTier() {
        var queue = TierQueue<Int>()
        #expect(queue.isEmpty && queue.count == 0 && queue.peekTier == nil)
        for i in 0..<5 { queue.enqueue(i, tier: .free) }
        for i in 0..<3 { queue.enqueue(i, tier: .standard) }
        queue.enqueue(0, tier: .premium)
        #expect(queue.count == 9)
        #expect(queue.count(tier: .premium) == 1)
        #expect(queue.count(tier: .standard) == 3)
        #expect(queue.count(tier: .free) == 5)
        #expect(queue.peekTier == .premium)
        _ = queue.dequeue(max: 2)
        #expect(queue.count(tier: .premium) == 0)
        #expect(queue.count(tier: .standard) == 2)
        #expect(queue.peekTier == .standard)
        #expect(!queue.isEmpty)
    }

    /// Random operations against a reference model: the queue's order is the waiting elements
    /// sorted by (priority descending, ticket ascending).
    @Test(.timeLimit(.minutes(1)), arguments: [1, 2, 3, 42, 2024] as [UInt64])
    func matchesAReferenceModel(seed: UInt64) {
        typealias Item = (ticket: UInt64, tier: Tier, element: Int)
        func servedBefore(_ a: Item, _ b: Item) -> Bool {
            a.tier.priority != b.tier.priority ? a.tier.priority > b.tier.priority : a.ticket < b.ticket
        }

        var random = SeededRandom(seed: seed)
        var queue = TierQueue<Int>()
        var model: [Item] = []
        var issued: [UInt64] = []
        var deepest = 0

        for step in 0..<20_000 {
            // Alternate phases that grow and drain the queue, so lanes get long (and compact) and
            // also run empty.
            let growing = (step / 2_000) % 2 == 0
            let (enqueue, dequeue, dequeueMax, remove) = growing ? (60, 65, 70, 95) : (20, 45, 60, 95)
            let roll = Int(random.next(below: 100))
            if roll < enqueue {
                let tier = Tier.allCases[Int(random.next(below: 3))]
                let ticket = queue.enqueue(step, tier: tier)
                if let last = issued.last { #expect(ticket > last) }
                issued.append(ticket)
                model.append((ticket, tier, step))
            } else if roll < dequeue {
                let expected = model.min(by: servedBefore)
                let actual = queue.dequeue()
                #expect(actual?.ticket == expected?.ticket)
                #expect(actual?.tier == expected?.tier)
                #expect(actual?.element == expected?.element)
                if let expected { model.removeAll { $0.ticket == expected.ticket } }
            } else if roll < dequeueMax {
                let max = Int(random.next(below: 12))
                let expected = Array(model.sorted(by: servedBefore).prefix(max))
                let actual = queue.dequeue(max: max)
                #expect(actual.map(\.ticket) == expected.map(\.ticket))
                #expect(actual.map(\.tier) == expected.map(\.tier))
                #expect(actual.map(\.element) == expected.map(\.element))
                let taken = Set(expected.map(\.ticket))
                model.removeAll { taken.contains($0.ticket) }
            } else if roll < remove {
                // Any ticket ever issued (often gone already), sometimes one never issued.
                guard !issued.isEmpty else { continue }
                let ticket =
                    random.next(below: 20) == 0
                    ? UInt64.max - random.next(below: 10)
                    : issued[Int(random.next(below: UInt64(issued.count)))]
                let expected = model.first { $0.ticket == ticket }?.element
                #expect(queue.remove(ticket: ticket) == expected)
                model.removeAll { $0.ticket == ticket }
            } else {
                let lowest = model.map(\.tier).min()
                let expected = model.filter { $0.tier == lowest }.map(\.ticket).max()
                #expect(queue.shedCandidate() == expected)
            }

            deepest = max(deepest, model.count)
            #expect(queue.count == model.count)
            #expect(queue.isEmpty == model.isEmpty)
            #expect(queue.peekTier == model.map(\.tier).max())
            if step % 97 == 0 {
                for tier in Tier.allCases {
                    #expect(queue.count(tier: tier) == model.count(where: { $0.tier == tier }))
                }
            }
        }

        #expect(deepest > 200, "the run should build long lanes")
        let rest = queue.dequeue(max: .max)
        #expect(rest.map(\.ticket) == model.sorted(by: servedBefore).map(\.ticket))
        #expect(queue.isEmpty)
    }
}
