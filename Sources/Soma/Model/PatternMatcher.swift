/// A token trie over a model's patterns: finds every pattern occurrence in a document in time
/// proportional to the document's length times the longest pattern, never by scanning the
/// pattern list.
///
/// Literal tokens are interned to integers; an edge is one hash lookup keyed by (node, token).
/// Slot edges (`<AGENT>`, `<ANY>`, `<NUM>`) are kept per node and tried after the literal edge.
public struct PatternMatcher: Sendable {
    /// A pattern occurrence: token range in the document and the pattern's index in the table.
    public struct Match: Sendable, Equatable {
        public var range: Range<Int>
        public var pattern: Int
    }

    private var vocabulary = WordTable<Int32>()
    private var edges = EdgeTable()
    /// Whether a pattern starts with each token id (an edge from the root), by id: a scan skips a
    /// token that starts none without walking the trie (most tokens of most texts).
    private var startsPattern: [Bool] = []
    /// Node `n`'s slot edges are `slotEdges[slotStart[n]..<slotStart[n + 1]]`, and the patterns
    /// ending at it `terminals[terminalStart[n]..<terminalStart[n + 1]]`: flat arrays, so a step of
    /// the walk reads two integers instead of retaining a per-node array (most nodes have none).
    private var slotStart: [Int32] = []
    private var slotEdges: [(slot: Slot, node: Int32)] = []
    private var terminalStart: [Int32] = []
    private var terminals: [Int32] = []
    public private(set) var longestPattern = 0

    /// The trie while it is built: per node, its slot edges and terminals.
    private struct Building {
        var slotEdges: [[(slot: Slot, node: Int32)]] = [[]]
        var terminals: [[Int32]] = [[]]

        mutating func newNode() -> Int32 {
            terminals.append([])
            slotEdges.append([])
            return Int32(terminals.count - 1)
        }
    }

    public init(patterns: [Pattern]) {
        self.init(patterns: patterns, where: { _ in true })
    }

    /// A trie over the patterns `keep` accepts; matches still name a pattern by its index in
    /// `patterns`. A scan that wants one class only ("temporal" among eight thousand verb forms)
    /// walks this smaller trie instead of every pattern and filtering: most tokens then start no
    /// walk at all.
    public init(patterns: [Pattern], where keep: (Pattern) -> Bool) {
        var building = Building()
        for (index, pattern) in patterns.enumerated() where keep(pattern) {
            insert(pattern.tokens, index: Int32(index), into: &building)
        }
        slotStart = [0]
        terminalStart = [0]
        for node in building.terminals.indices {
            slotEdges += building.slotEdges[node]
            slotStart.append(Int32(slotEdges.count))
            terminals += building.terminals[node]
            terminalStart.append(Int32(terminals.count))
        }
        startsPattern = (0..<Int32(vocabulary.count)).map { edges[Self.key(0, $0)] != nil }
    }

    private static func key(_ node: Int32, _ token: Int32) -> UInt64 {
        UInt64(UInt32(bitPattern: node)) << 32 | UInt64(UInt32(bitPattern: token))
    }

    private mutating func insert(_ tokens: [String], index: Int32, into building: inout Building) {
        var node: Int32 = 0
        for token in tokens {
            if let slot = Slot(rawValue: token) {
                if let existing = building.slotEdges[Int(node)].first(where: { $0.slot == slot }) {
                    node = existing.node
                } else {
                    let next = building.newNode()
                    building.slotEdges[Int(node)].append((slot, next))
                    node = next
                }
                continue
            }
            let id: Int32
            if let known = vocabulary[token] {
                id = known
            } else {
                id = Int32(vocabulary.count)
                vocabulary.insert(token, id)
            }
            let k = Self.key(node, id)
            if let next = edges[k] {
                node = next
            } else {
                let next = building.newNode()
                edges.insert(k, next)
                node = next
            }
        }
        building.terminals[Int(node)].append(index)
        longestPattern = max(longestPattern, tokens.count)
    }

    /// The interned id of each token of `doc` (-1 when no pattern uses it).
    public func tokenIDs(_ doc: Document) -> [Int32] {
        // Read in place: `map` would copy every token (its two Strings retained and released).
        doc.tokens.withUnsafeBufferPointer { tokens in
            [Int32](unsafeUninitializedCapacity: tokens.count) { ids, count in
                for i in tokens.indices { ids.initializeElement(at: i, to: vocabulary[tokens[i]] ?? -1) }
                count = tokens.count
            }
        }
    }

    /// Every match that starts at `start`, shortest first.
    public func matches(
        at start: Int,
        in doc: Document,
        ids: [Int32],
        limit: Int? = nil,
        isAgent: (Int) -> Bool = { _ in false }
    ) -> [Match] {
        var found: [Match] = []
        collect(at: start, in: doc, ids: ids, limit: limit, isAgent: isAgent, into: &found)
        return found
    }

    /// `matches(at:…)` into `found` (emptied first), so a scan reuses one buffer.
    private func collect(
        at start: Int, in doc: Document, ids: [Int32], limit: Int?, isAgent: (Int) -> Bool, into found: inout [Match]
    ) {
        found.removeAll(keepingCapacity: true)
        let end = min(limit ?? doc.tokens.count, doc.tokens.count)
        walk(node: 0, position: start, start: start, end: end, doc: doc, ids: ids, isAgent: isAgent, into: &found)
        // Walks reach longer matches later, except through slot edges: sort only when needed.
        if !found.isEmpty, zip(found, found.dropFirst()).contains(where: { $0.range.count > $1.range.count }) {
            found.sort { $0.range.count < $1.range.count }
        }
    }

    private func walk(
        node: Int32, position: Int, start: Int, end: Int, doc: Document, ids: [Int32],
        isAgent: (Int) -> Bool, into found: inout [Match]
    ) {
        let n = Int(node)
        if node != 0 {
            for t in Int(terminalStart[n])..<Int(terminalStart[n + 1]) {
                found.append(Match(range: start..<position, pattern: Int(terminals[t])))
            }
        }
        guard position < end else { return }
        let id = ids[position]
        if id >= 0, let next = edges[Self.key(node, id)] {
            walk(node: next, position: position + 1, start: start, end: end, doc: doc, ids: ids, isAgent: isAgent, into: &found)
        }
        let slots = Int(slotStart[n])..<Int(slotStart[n + 1])
        guard !slots.isEmpty else { return }
        let kind = doc.tokens[position].kind
        for s in slots {
            let (slot, next) = slotEdges[s]
            let fits: Bool
            switch slot {
            case .any: fits = kind == .word
            case .number: fits = kind == .number
            case .agent: fits = isAgent(position)
            }
            if fits {
                walk(node: next, position: position + 1, start: start, end: end, doc: doc, ids: ids, isAgent: isAgent, into: &found)
            }
        }
    }

    /// Non-overlapping matches over `range`, scanning left to right and taking the longest match at
    /// each position; `accept` can refuse a pattern (e.g. to look only at some classes).
    ///
    /// Pass both closures by label: a bare trailing closure would bind to `isAgent`.
    public func longestMatches(
        in doc: Document,
        ids: [Int32],
        range: Range<Int>? = nil,
        isAgent: (Int) -> Bool = { _ in false },
        accept: (Int) -> Bool = { _ in true }
    ) -> [Match] {
        let r = range ?? 0..<doc.tokens.count
        var result: [Match] = []
        var here: [Match] = []
        var i = r.lowerBound
        while i < r.upperBound {
            // No literal edge from the root for this token and no slot edge there: nothing starts here.
            if slotStart[1] == 0 && (ids[i] < 0 || !startsPattern[Int(ids[i])]) {
                i += 1
                continue
            }
            collect(at: i, in: doc, ids: ids, limit: r.upperBound, isAgent: isAgent, into: &here)
            if let best = here.last(where: { accept($0.pattern) }) {
                // Several patterns may share the longest span (same tokens, other classes): keep them all.
                for m in here where m.range == best.range && accept(m.pattern) { result.append(m) }
                i = best.range.upperBound
            } else {
                i += 1
            }
        }
        return result
    }
}
