import Foundation

/// The bounds the admission state machine enforces; every field has a default.
public struct AdmissionConfiguration: Sendable, Hashable {
    /// Requests that may run at once: about one worker per core. The rest wait in the queue.
    public var workers: Int
    /// Most requests admitted and not yet ended (running plus waiting) over all users.
    public var maxInFlight: Int
    /// Most requests waiting for a worker. Together with `maxInFlight`, the tighter bound wins.
    public var maxQueued: Int
    /// Per-tier limits; the machine reads `maxInFlightPerUser`.
    public var policy: TierPolicy
    /// The service-time estimate before the first `finish` has taught it anything.
    public var initialServiceTime: Duration
    /// Weight of each new service-time sample in the moving average, in (0, 1]: higher follows
    /// changes faster, lower smooths outliers more.
    public var serviceTimeSmoothing: Double
    /// Smallest `retryAfter` handed out: `Retry-After` is in whole seconds, and telling a client to
    /// come back in 3 ms only invites a storm.
    public var minimumRetryAfter: Duration

    /// One worker per active processor (at least one).
    public static var defaultWorkers: Int { max(1, ProcessInfo.processInfo.activeProcessorCount) }

    public init(
        workers: Int = AdmissionConfiguration.defaultWorkers,
        maxInFlight: Int = 256,
        maxQueued: Int = 256,
        policy: TierPolicy = TierPolicy(),
        initialServiceTime: Duration = .milliseconds(10),
        serviceTimeSmoothing: Double = 0.2,
        minimumRetryAfter: Duration = .seconds(1)
    ) {
        precondition(workers >= 1, "workers must be at least 1")
        precondition(maxInFlight >= 1, "maxInFlight must be at least 1")
        precondition(maxQueued >= 0, "maxQueued must not be negative")
        precondition(initialServiceTime >= .zero, "initialServiceTime must not be negative")
        precondition(serviceTimeSmoothing > 0 && serviceTimeSmoothing <= 1, "serviceTimeSmoothing must be in (0, 1]")
        precondition(minimumRetryAfter >= .zero, "minimumRetryAfter must not be negative")
        self.workers = workers
        self.maxInFlight = maxInFlight
        self.maxQueued = maxQueued
        self.policy = policy
        self.initialServiceTime = initialServiceTime
        self.serviceTimeSmoothing = serviceTimeSmoothing
        self.minimumRetryAfter = minimumRetryAfter
    }
}

/// Why an arriving request was refused.
public enum AdmissionRejectionReason: Sendable, Hashable {
    /// The user already has their tier's `maxInFlightPerUser` requests admitted (HTTP 429).
    case userConcurrency
    /// The in-flight or queue bound is reached and nothing of a lower tier waits to be shed (HTTP 503).
    case overloaded
    /// The request would not finish before its deadline: it arrived past it, or the expected wait
    /// for a worker plus the expected service time passes it (HTTP 503).
    case deadlineUnreachable
}

/// Decides which analysis requests run, wait or are refused: the admission policy of the session
/// manager (docs/ARCHITECTURE.md §3), as a pure state machine.
///
/// Rules:
/// - at most `workers` requests run at once; an arriving request runs at once when a worker is free,
///   otherwise it waits in a `TierQueue` (premium before standard before free, first come first
///   served within a tier), and each `finish` or `cancel` starts the next from the head;
/// - at most `maxInFlight` requests are admitted (running plus waiting) and at most `maxQueued` wait;
/// - a user has at most their tier's `maxInFlightPerUser` requests admitted, beyond that
///   `.userConcurrency`;
/// - when the queue is full, a newcomer of a higher tier than the lowest waiting one takes the place
///   of the newest request of that lowest tier (which is shed); otherwise the newcomer is refused as
///   `.overloaded`. So a free request never displaces a premium one;
/// - a request whose expected wait (requests served before it, times an estimated service time,
///   over the workers) plus its own service would pass its deadline is refused at once
///   (`.deadlineUnreachable`) rather than after waiting in vain, and a waiting request whose
///   deadline passes is expired (by `tick`, or when it reaches the head on `finish`). The estimate
///   is an exponentially weighted moving average of the service times reported to `finish`.
///
/// Why a state machine: the policy is the part worth testing exhaustively, and it is easy to test
/// only without I/O, clocks or tasks. As in postgres-nio's `PoolStateMachine`, each event method
/// changes the state and returns the `Action`s the owner must carry out (resume a waiter, answer
/// 503); the owner, the HTTP layer's session manager, holds the machine under a lock, keeps one
/// continuation per request and resumes them after the lock is released. Time is an argument: every
/// `now` and `deadline` is a `Duration` since an origin of the owner's choosing (e.g. its start on
/// its clock), the same origin for every call.
///
/// Every admitted request ends exactly once: by an action the machine returns (`.reject` at arrival,
/// `.shed`, `.expire`) or by the owner calling `finish` (it ran) or `cancel` (its caller left).
/// After that its id is forgotten and may not appear in any later action.
///
/// ```swift
/// var machine = AdmissionStateMachine<UInt64>(configuration: .init(workers: 4))
/// for action in machine.arrive(id: 1, user: "u1", tier: .premium, deadline: now + .seconds(1), now: now) {
///     switch action {
///     case .run(let id): start(id)                  // resume its waiter: it may run
///     case .enqueue: break                          // it keeps waiting
///     case .reject(let id, let reason, let retryAfter): refuse(id, reason, retryAfter)
///     case .shed(let id, let retryAfter): refuse(id, .overloaded, retryAfter)
///     case .expire(let id): timeOut(id)
///     }
/// }
/// // later, when request 1 is done, start whatever the freed slot lets run:
/// let next = machine.finish(id: 1, now: later, serviceTime: later - started)
/// ```
///
/// Cost: `arrive`, `finish` and `cancel` are O(1) amortised apart from the queue's O(log n) removal
/// by ticket; `tick` is O(waiting requests) when a waiting deadline may be due, O(1) otherwise.
public struct AdmissionStateMachine<RequestID: Hashable & Sendable>: Sendable {
    /// What the owner must do after an event. Every action names one request.
    public enum Action: Sendable, Hashable {
        /// The request holds a worker slot now: let it start.
        case run(RequestID)
        /// The request waits for a worker; a later `.run`, `.shed` or `.expire` names it again.
        case enqueue(RequestID)
        /// The arriving request is refused and was never admitted; it may come back after
        /// `retryAfter`.
        case reject(RequestID, reason: AdmissionRejectionReason, retryAfter: Duration)
        /// The waiting request was dropped to make room for a higher tier (HTTP 503 overloaded).
        case shed(RequestID, retryAfter: Duration)
        /// The waiting request's deadline passed before a worker took it (HTTP 504, or the
        /// degradation chain).
        case expire(RequestID)
    }

    /// Where an admitted request is.
    public enum RequestState: Sendable, Hashable {
        /// Waiting for a worker in `tier`'s lane.
        case queued(Tier)
        /// Holding a worker slot.
        case running
    }

    private struct Request {
        var user: String
        var tier: Tier
        var deadline: Duration
        var phase: Phase
    }

    private enum Phase {
        case queued(ticket: UInt64)
        case running(since: Duration)
    }

    public let configuration: AdmissionConfiguration
    private var requests: [RequestID: Request] = [:]
    private var queue = TierQueue<RequestID>()
    private var perUser: [String: Int] = [:]
    /// A lower bound of the earliest deadline among waiting requests (it may be stale low after
    /// removals), so `tick` skips its scan while nothing can be due.
    private var earliestQueuedDeadline: Duration?

    /// Requests holding a worker slot now (at most `workers`).
    public private(set) var runningCount = 0
    /// The current service-time estimate (moving average of the samples given to `finish`).
    public private(set) var estimatedServiceTime: Duration

    public init(configuration: AdmissionConfiguration = AdmissionConfiguration()) {
        self.configuration = configuration
        self.estimatedServiceTime = configuration.initialServiceTime
    }

    // MARK: Introspection

    /// Requests admitted and not yet ended: running plus waiting.
    public var inFlightCount: Int { runningCount + queue.count }

    /// Requests waiting for a worker, over all tiers.
    public var queuedCount: Int { queue.count }

    /// Requests of `tier` waiting for a worker.
    public func queuedCount(tier: Tier) -> Int { queue.count(tier: tier) }

    /// Requests of `user` admitted and not yet ended (running plus waiting).
    public func inFlight(user: String) -> Int { perUser[user] ?? 0 }

    /// Where request `id` is, `nil` when it is unknown or has ended.
    public func state(of id: RequestID) -> RequestState? {
        guard let request = requests[id] else { return nil }
        switch request.phase {
        case .queued: return .queued(request.tier)
        case .running: return .running
        }
    }

    /// How many requests may run at once: `workers`, unless `maxInFlight` is smaller.
    private var runLimit: Int { min(configuration.workers, configuration.maxInFlight) }

    private var queueIsFull: Bool {
        queue.count >= configuration.maxQueued || inFlightCount >= configuration.maxInFlight
    }

    // MARK: Events

    /// A request arrives. Returns one action naming `id` (`.run`, `.enqueue` or `.reject`), preceded
    /// by a `.shed` of a waiting request when the newcomer took its place.
    ///
    /// - Parameters:
    ///   - id: unique among the requests not yet ended (a duplicate is a programming error).
    ///   - deadline: when an answer is no longer useful, on the same time line as `now`.
    public mutating func arrive(id: RequestID, user: String, tier: Tier, deadline: Duration, now: Duration) -> [Action] {
        precondition(requests[id] == nil, "request id \(id) is already admitted")
        if deadline <= now {
            return [.reject(id, reason: .deadlineUnreachable, retryAfter: retryAfter(.zero))]
        }
        if inFlight(user: user) >= configuration.policy[tier].maxInFlightPerUser {
            return [.reject(id, reason: .userConcurrency, retryAfter: retryAfter(estimatedServiceTime))]
        }
        if runningCount < runLimit && queue.isEmpty {
            admit(id, user: user, tier: tier, deadline: deadline, phase: .running(since: now))
            return [.run(id)]
        }

        let wait = expectedWait(ahead: queuedAhead(of: tier))
        if now + wait + estimatedServiceTime > deadline {
            return [.reject(id, reason: .deadlineUnreachable, retryAfter: retryAfter(wait))]
        }

        var actions: [Action] = []
        if queueIsFull {
            guard let lowest = lowestQueuedTier, tier > lowest,
                let ticket = queue.shedCandidate(), let victim = queue.remove(ticket: ticket)
            else {
                return [.reject(id, reason: .overloaded, retryAfter: retryAfter(expectedWait(ahead: queue.count)))]
            }
            end(victim)
            actions.append(.shed(victim, retryAfter: retryAfter(expectedWait(ahead: queue.count))))
        }
        let ticket = queue.enqueue(id, tier: tier)
        admit(id, user: user, tier: tier, deadline: deadline, phase: .queued(ticket: ticket))
        earliestQueuedDeadline = min(earliestQueuedDeadline ?? deadline, deadline)
        actions.append(.enqueue(id))
        return actions
    }

    /// A running request is done: frees its worker slot, feeds the service-time estimate, and
    /// starts the next waiting requests from the head of the queue (`.run`), expiring those whose
    /// deadline has passed on the way (`.expire`).
    ///
    /// - Parameter serviceTime: how long the request ran; `nil` takes the time since the machine
    ///   returned its `.run`. Ignored when the id is not running (unknown, ended or still waiting:
    ///   a waiting request leaves through `cancel`), and then nothing happens.
    public mutating func finish(id: RequestID, now: Duration, serviceTime: Duration? = nil) -> [Action] {
        guard let request = requests[id], case .running(let since) = request.phase else { return [] }
        end(id)
        record(serviceTime: serviceTime ?? (now - since))
        return startWaiting(now: now)
    }

    /// The caller of request `id` went away: a waiting request leaves the queue, a running one frees
    /// its slot (without teaching the estimate anything) and the next waiting requests start, as
    /// on `finish`. No action names `id` itself; unknown or ended ids are ignored.
    public mutating func cancel(id: RequestID, now: Duration) -> [Action] {
        guard let request = requests[id] else { return [] }
        switch request.phase {
        case .queued(let ticket):
            _ = queue.remove(ticket: ticket)
            end(id)
            return []
        case .running:
            end(id)
            return startWaiting(now: now)
        }
    }

    /// Time passes: expires every waiting request whose deadline is at or before `now`, oldest
    /// ticket first. Running requests are left alone: their own deadline handling (the degradation
    /// chain) answers them.
    public mutating func tick(now: Duration) -> [Action] {
        guard let earliest = earliestQueuedDeadline, earliest <= now else { return [] }
        var due: [(ticket: UInt64, id: RequestID)] = []
        var nextEarliest: Duration?
        for (id, request) in requests {
            guard case .queued(let ticket) = request.phase else { continue }
            if request.deadline <= now {
                due.append((ticket, id))
            } else {
                nextEarliest = min(nextEarliest ?? request.deadline, request.deadline)
            }
        }
        earliestQueuedDeadline = nextEarliest
        due.sort { $0.ticket < $1.ticket }
        for (ticket, id) in due {
            _ = queue.remove(ticket: ticket)
            end(id)
        }
        return due.map { .expire($0.id) }
    }

    // MARK: Internals

    private mutating func admit(_ id: RequestID, user: String, tier: Tier, deadline: Duration, phase: Phase) {
        requests[id] = Request(user: user, tier: tier, deadline: deadline, phase: phase)
        perUser[user, default: 0] += 1
        if case .running = phase { runningCount += 1 }
    }

    /// Forgets `id` (already removed from the queue if it waited) and releases what it held.
    private mutating func end(_ id: RequestID) {
        guard let request = requests.removeValue(forKey: id) else { return }
        if case .running = request.phase { runningCount -= 1 }
        let remaining = perUser[request.user, default: 1] - 1
        perUser[request.user] = remaining > 0 ? remaining : nil
        if queue.isEmpty { earliestQueuedDeadline = nil }
    }

    /// Fills free worker slots from the head of the queue, expiring what is already late.
    private mutating func startWaiting(now: Duration) -> [Action] {
        var actions: [Action] = []
        while runningCount < runLimit, let entry = queue.dequeue() {
            let id = entry.element
            guard let request = requests[id] else { continue }
            if request.deadline <= now {
                end(id)
                actions.append(.expire(id))
            } else {
                requests[id]?.phase = .running(since: now)
                runningCount += 1
                actions.append(.run(id))
            }
        }
        return actions
    }

    private mutating func record(serviceTime sample: Duration) {
        let sample = max(.zero, sample)
        let weight = configuration.serviceTimeSmoothing
        estimatedServiceTime = estimatedServiceTime * (1 - weight) + sample * weight
    }

    /// Waiting requests that would be served before a newcomer of `tier`: those of its tier and
    /// above (it joins the back of its own lane).
    private func queuedAhead(of tier: Tier) -> Int {
        Tier.allCases.reduce(0) { $0 + ($1 >= tier ? queue.count(tier: $1) : 0) }
    }

    /// Expected time until a newcomer with `ahead` requests before it gets a worker, all workers
    /// being busy: `ahead + 1` requests must finish, `runLimit` at a time.
    private func expectedWait(ahead: Int) -> Duration {
        estimatedServiceTime * (ahead + 1) / runLimit
    }

    private var lowestQueuedTier: Tier? {
        Tier.allCases.last { queue.count(tier: $0) > 0 }
    }

    private func retryAfter(_ estimate: Duration) -> Duration {
        max(configuration.minimumRetryAfter, estimate)
    }
}
