import Synchronization

/// The in-process cache (L1) in front of Redis (L2): least-recently-used eviction, a time to live
/// per entry, and a bound in bytes (and optionally in entries).
///
/// Why bytes: analysis results differ in size by orders of magnitude (a one-line emotion result
/// against a narrative result over 64 KB of text), so a bound in entries says little about memory.
/// The caller states each entry's cost in bytes when it stores it — it usually has the size at hand,
/// e.g. the length of the encoded result it also writes to L2 — and the cache keeps the sum of
/// costs at or under `Configuration.maxBytes`, evicting least recently used entries first. The
/// cost is the caller's estimate; the cache adds nothing for its own bookkeeping (keys, links).
///
/// Why a TTL when analysis keys already carry the model version: it bounds how long per-user
/// entries can be stale on this instance, and lets entries nobody asks for leave even when the
/// cache is not full. An expired entry is a miss, and is removed when a lookup or an eviction meets
/// it; `purgeExpired()` sweeps all of them (run it now and then so expired entries do not hold
/// memory until LRU eviction reaches them). Time is read from the injected clock, so tests move
/// it by hand.
///
/// Per-user entries are only as fresh as this instance knows: a write handled by another instance
/// does not reach this L1. Callers that need read-your-writes across instances either keep per-user
/// entries out of L1, give them a short TTL, or propagate invalidations.
///
/// Shape: synchronous and O(1) for `get`, `set` and `remove`, because it sits on every request's
/// path. The entries live in one array of nodes linked into a doubly linked recency list by index
/// (most recent at the head), with a dictionary from key to index; freed slots are chained into a
/// free list and reused, so a steady-state cache allocates nothing per operation beyond what the
/// dictionary and the values themselves need. The state sits in a `Mutex` (not an actor) because
/// callers are synchronous and every critical section is a handful of pointer updates; the clock is
/// read before the lock is taken.
///
/// ```swift
/// let cache = L1Cache<AnalysisResults>(configuration: .init(maxBytes: 64 << 20))
/// let key = CacheKey.analysis(module: .emotion, modelVersion: version, normalizedText: normalized)
/// if let hit = cache.get(key) { return hit }
/// let results = try await pipeline.analyze(normalized, modules: [.emotion])
/// let encoded = try JSONEncoder().encode(results)   // also what L2 stores
/// cache.set(key, results, cost: encoded.count)
/// ```
public final class L1Cache<Value: Sendable>: Sendable {
    /// Bounds and default TTL; every field has a default.
    public struct Configuration: Sendable, Equatable {
        /// Most bytes (sum of the entries' costs) held at once. An entry costing more is not stored.
        public var maxBytes: Int
        /// Most entries held at once; nil bounds the cache by bytes only.
        public var maxEntries: Int?
        /// Time to live of entries stored without a `ttl` of their own.
        public var defaultTTL: Duration

        public init(maxBytes: Int = 64 << 20, maxEntries: Int? = nil, defaultTTL: Duration = .seconds(600)) {
            self.maxBytes = maxBytes
            self.maxEntries = maxEntries
            self.defaultTTL = defaultTTL
        }
    }

    /// Counters since the cache was made, for metrics (`soma_cache_requests_total{layer="l1"}`).
    public struct Stats: Sendable, Equatable {
        /// `get` calls that returned a value.
        public var hits = 0
        /// `get` calls that returned nil, expired entries included.
        public var misses = 0
        /// Live entries dropped to make room (byte or entry bound).
        public var evictions = 0
        /// Entries dropped because their TTL had passed (met by `get`, by eviction, or by
        /// `purgeExpired()`).
        public var expirations = 0
        /// `set` calls that stored their value (new keys and replacements).
        public var inserts = 0
        /// `set` calls that stored nothing: cost above `maxBytes`, or a TTL that is not positive.
        public var rejections = 0

        /// hits / (hits + misses), 0 before the first lookup.
        public var hitRate: Double {
            let lookups = hits + misses
            return lookups == 0 ? 0 : Double(hits) / Double(lookups)
        }

        public init() {}
    }

    public let configuration: Configuration
    /// Time since the cache was made, on its clock; expiry times are kept in this form so the state
    /// does not depend on the clock's `Instant` type.
    private let elapsed: @Sendable () -> Duration
    private let state: Mutex<State>

    /// - Parameters:
    ///   - configuration: the bounds and the default TTL.
    ///   - clock: the clock TTLs are measured on; tests pass a manual one.
    public init(configuration: Configuration = Configuration(), clock: any Clock<Duration> = ContinuousClock()) {
        precondition(configuration.maxBytes >= 0, "maxBytes must not be negative")
        precondition((configuration.maxEntries ?? 1) >= 1, "maxEntries must be at least 1")
        precondition(configuration.defaultTTL > .zero, "defaultTTL must be positive")
        self.configuration = configuration
        self.elapsed = Timeline(clock: clock).now
        self.state = Mutex(State(maxBytes: configuration.maxBytes, maxEntries: configuration.maxEntries ?? .max))
    }

    // MARK: Operations

    /// The value stored under `key`, or nil when there is none or it has expired.
    ///
    /// A hit makes the entry the most recently used; an expired entry is removed. Both count in
    /// `stats()`.
    public func get(_ key: CacheKey) -> Value? {
        let now = elapsed()
        return state.withLock { $0.get(key, now: now) }
    }

    /// Stores `value` under `key` as the most recently used entry, replacing any previous value,
    /// then evicts least recently used entries until both bounds hold again.
    ///
    /// - Parameters:
    ///   - cost: the entry's size in bytes (not negative), counted against `maxBytes`.
    ///   - ttl: how long the entry lives; nil takes `configuration.defaultTTL`.
    /// - Returns: whether the value was stored. It is not when `cost` exceeds `maxBytes` or `ttl`
    ///   is not positive; a previous value under `key` is removed then all the same, so a `get`
    ///   never returns a value older than the last `set`.
    @discardableResult
    public func set(_ key: CacheKey, _ value: Value, cost: Int, ttl: Duration? = nil) -> Bool {
        precondition(cost >= 0, "cost must not be negative")
        let ttl = ttl ?? configuration.defaultTTL
        let now = elapsed()
        return state.withLock { $0.set(key, value, cost: cost, ttl: ttl, now: now) }
    }

    /// Removes the entry under `key`; returns whether there was one (expired or not).
    @discardableResult
    public func remove(_ key: CacheKey) -> Bool {
        state.withLock { state in
            guard let slot = state.index[key] else { return false }
            state.free(slot)
            return true
        }
    }

    /// Removes every entry whose key satisfies `shouldRemove`; returns how many were removed.
    ///
    /// O(entries): meant for rare administrative work such as erasing a user
    /// (`removeAll { $0.userID == id }`), not for the request path. `shouldRemove` runs under the
    /// cache's lock: keep it cheap and do not call back into the cache from it.
    @discardableResult
    public func removeAll(where shouldRemove: (CacheKey) -> Bool) -> Int {
        state.withLock { state in
            state.removeAll { shouldRemove($0.key) }
        }
    }

    /// Removes every expired entry; returns how many were removed (counted as expirations).
    ///
    /// O(entries). Expired entries are misses whether or not they were purged; purging only gives
    /// their memory back sooner.
    @discardableResult
    public func purgeExpired() -> Int {
        let now = elapsed()
        return state.withLock { state in
            let removed = state.removeAll { $0.expiresAt <= now }
            state.stats.expirations += removed
            return removed
        }
    }

    // MARK: Inspection

    /// Entries held, including expired ones that no lookup, eviction or purge has met yet.
    public var count: Int {
        state.withLock { $0.index.count }
    }

    /// Sum of the costs of the entries held (as `count`, expired ones included until removed).
    public var bytes: Int {
        state.withLock { $0.bytes }
    }

    /// The counters so far.
    public func stats() -> Stats {
        state.withLock { $0.stats }
    }

    /// The keys held, most recently used first (as `count`, expired ones included until removed).
    ///
    /// O(entries); for diagnostics and tests. Does not change recency or the counters.
    public func keysByRecency() -> [CacheKey] {
        state.withLock { state in
            var keys: [CacheKey] = []
            keys.reserveCapacity(state.index.count)
            var slot = state.head
            while slot != State.none {
                keys.append(state.nodes[slot].key)
                slot = state.nodes[slot].next
            }
            return keys
        }
    }

    // MARK: State

    /// The entries and their recency list; every method keeps these invariants:
    /// `index[nodes[i].key] == i` for each linked slot, `bytes` is the sum of the linked slots'
    /// costs, and the list from `head` along `next` visits exactly the slots in `index`.
    private struct State {
        /// "No slot": the end of a list.
        static var none: Int { -1 }

        struct Node {
            var key: CacheKey
            /// nil while the slot is free, so a freed slot does not keep its value alive.
            var value: Value?
            var cost: Int
            var expiresAt: Duration
            /// Towards the head (more recently used).
            var previous: Int
            /// Towards the tail (less recently used); in a free slot, the next free slot.
            var next: Int
        }

        let maxBytes: Int
        let maxEntries: Int
        var nodes: [Node] = []
        var index: [CacheKey: Int] = [:]
        /// Most recently used.
        var head = State.none
        /// Least recently used: the next to be evicted.
        var tail = State.none
        /// First free slot in `nodes`, chained through `next`.
        var freeHead = State.none
        var bytes = 0
        var stats = Stats()

        init(maxBytes: Int, maxEntries: Int) {
            self.maxBytes = maxBytes
            self.maxEntries = maxEntries
        }

        mutating func get(_ key: CacheKey, now: Duration) -> Value? {
            guard let slot = index[key] else {
                stats.misses += 1
                return nil
            }
            if nodes[slot].expiresAt <= now {
                free(slot)
                stats.expirations += 1
                stats.misses += 1
                return nil
            }
            moveToFront(slot)
            stats.hits += 1
            return nodes[slot].value
        }

        mutating func set(_ key: CacheKey, _ value: Value, cost: Int, ttl: Duration, now: Duration) -> Bool {
            let existing = index[key]
            guard cost <= maxBytes, ttl > .zero else {
                if let existing { free(existing) }
                stats.rejections += 1
                return false
            }
            let expiresAt = now + ttl
            if let slot = existing {
                bytes += cost - nodes[slot].cost
                nodes[slot].value = value
                nodes[slot].cost = cost
                nodes[slot].expiresAt = expiresAt
                moveToFront(slot)
            } else {
                let node = Node(key: key, value: value, cost: cost, expiresAt: expiresAt, previous: State.none, next: State.none)
                let slot = allocate(node)
                index[key] = slot
                linkAtFront(slot)
                bytes += cost
            }
            stats.inserts += 1
            // The new entry is at the head and fits on its own, so eviction stops before it.
            while bytes > maxBytes || index.count > maxEntries {
                let victim = tail
                if nodes[victim].expiresAt <= now {
                    stats.expirations += 1
                } else {
                    stats.evictions += 1
                }
                free(victim)
            }
            return true
        }

        /// Unlinks and frees every slot for which `shouldRemove` is true, walking from the head;
        /// returns how many.
        mutating func removeAll(where shouldRemove: (Node) -> Bool) -> Int {
            var removed = 0
            var slot = head
            while slot != State.none {
                let next = nodes[slot].next
                if shouldRemove(nodes[slot]) {
                    free(slot)
                    removed += 1
                }
                slot = next
            }
            return removed
        }

        /// Removes the entry in `slot` from the list, the index and the byte count, and puts the
        /// slot on the free list.
        mutating func free(_ slot: Int) {
            unlink(slot)
            index.removeValue(forKey: nodes[slot].key)
            bytes -= nodes[slot].cost
            nodes[slot].value = nil
            nodes[slot].cost = 0
            nodes[slot].next = freeHead
            freeHead = slot
        }

        private mutating func allocate(_ node: Node) -> Int {
            guard freeHead != State.none else {
                nodes.append(node)
                return nodes.count - 1
            }
            let slot = freeHead
            freeHead = nodes[slot].next
            nodes[slot] = node
            return slot
        }

        private mutating func moveToFront(_ slot: Int) {
            guard slot != head else { return }
            unlink(slot)
            linkAtFront(slot)
        }

        private mutating func linkAtFront(_ slot: Int) {
            nodes[slot].previous = State.none
            nodes[slot].next = head
            if head != State.none { nodes[head].previous = slot }
            head = slot
            if tail == State.none { tail = slot }
        }

        private mutating func unlink(_ slot: Int) {
            let previous = nodes[slot].previous
            let next = nodes[slot].next
            if previous != State.none { nodes[previous].next = next } else { head = next }
            if next != State.none { nodes[next].previous = previous } else { tail = previous }
            nodes[slot].previous = State.none
            nodes[slot].next = State.none
        }
    }
}
