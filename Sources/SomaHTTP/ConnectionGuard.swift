import HummingbirdCore
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import Soma

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// What one connection may take of the server: how long a request's head and body may take to
/// arrive, how long a kept-alive connection may sit idle, and how many connections may be open at
/// once (docs/ARCHITECTURE.md §7). A client that never finishes its headers, or sends its body a
/// byte a second, is cut off by the timeouts; once the cap is reached, the connection that has
/// waited longest without a request in progress makes room for the new one.
public struct ConnectionLimits: Sendable, Equatable {
    /// From the first byte of a request (or from accept, for a connection's first request) until
    /// its head is complete (`SOMA_HEADER_TIMEOUT_MS`, 5000).
    public var headerTimeout: Duration = .seconds(5)
    /// From a request's head until its body is complete (`SOMA_BODY_TIMEOUT_MS`, 10000).
    public var bodyTimeout: Duration = .seconds(10)
    /// How long a kept-alive connection may wait for its next request (`SOMA_IDLE_TIMEOUT_MS`,
    /// 75000: longer than nginx's upstream keep-alive of 60 s, so the proxy closes first).
    public var idleTimeout: Duration = .seconds(75)
    /// Open connections at most (`SOMA_MAX_CONNECTIONS`; by default the descriptor limit less
    /// `reservedDescriptors`, at least 16).
    public var maxConnections: Int = ConnectionLimits.defaultMaxConnections()

    /// Descriptors kept for everything but client connections: the listening socket, Redis and
    /// PostgreSQL pools, SQLite and its journal, the outbox, logs.
    public static let reservedDescriptors = 64

    public init() {}

    /// The soft descriptor limit (`RLIMIT_NOFILE`) less the reserve.
    public static func defaultMaxConnections() -> Int {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < rlim_t(Int32.max) else { return 65536 }
        return max(16, Int(clamping: limit.rlim_cur) - reservedDescriptors)
    }
}

/// Why a connection was closed by the server rather than by its client; the label of
/// `soma_connections_closed_total`.
enum ConnectionCloseReason: String, Sendable {
    case headerTimeout = "header_timeout"
    case bodyTimeout = "body_timeout"
    case idleTimeout = "idle_timeout"
    case evicted
}

/// Raised into a request's body stream when the body did not arrive within `bodyTimeout`, so the
/// handler reading it answers 408 `request_timeout` (a client error, not a 500).
struct RequestBodyTimeout: Error {}

/// The open connections of one server, for the cap: what each is doing and since when, so the one
/// that has waited longest without a request in progress can be closed to make room.
final class ConnectionTable: Sendable {
    enum Phase: Sendable {
        /// Accepted, nothing received yet.
        case fresh
        /// Between requests on a kept-alive connection.
        case idle
        /// Part of a request head received.
        case readingHead
        /// Head received, body still arriving.
        case readingBody
        /// A request is being answered.
        case busy

        /// Whether closing the connection can lose nothing but a request that has not arrived.
        var isEvictable: Bool {
            switch self {
            case .fresh, .idle, .readingHead: true
            case .readingBody, .busy: false
            }
        }
    }

    private struct Entry {
        var phase: Phase
        var since: NIODeadline
        let channel: any Channel
    }

    private let entries = NIOLockedValueBox([ObjectIdentifier: Entry]())
    let metrics: SomaMetrics

    init(metrics: SomaMetrics) {
        self.metrics = metrics
    }

    var count: Int { entries.withLockedValue { $0.count } }

    func add(_ id: ObjectIdentifier, channel: any Channel) {
        let open = entries.withLockedValue { entries in
            entries[id] = Entry(phase: .fresh, since: .now(), channel: channel)
            return entries.count
        }
        metrics.set(SomaMetrics.Name.connectionsOpen, [], Double(open))
    }

    func update(_ id: ObjectIdentifier, _ phase: Phase) {
        entries.withLockedValue { entries in
            entries[id]?.phase = phase
            entries[id]?.since = .now()
        }
    }

    func remove(_ id: ObjectIdentifier) {
        let open = entries.withLockedValue { entries in
            entries[id] = nil
            return entries.count
        }
        metrics.set(SomaMetrics.Name.connectionsOpen, [], Double(open))
    }

    /// Closes the evictable connection that has been in its phase longest; false when every open
    /// connection has a request in progress.
    @discardableResult
    func evictStalest() -> Bool {
        let victim = entries.withLockedValue { entries in
            entries.values.filter { $0.phase.isEvictable }.min { $0.since < $1.since }
        }
        guard let victim else { return false }
        metrics.increment(SomaMetrics.Name.connectionsClosed, [("reason", ConnectionCloseReason.evicted.rawValue)])
        victim.channel.close(promise: nil)
        return true
    }
}

/// Hummingbird's accept gate (`availableConnectionsDelegate`): below the cap every connection is
/// accepted; at the cap the stalest evictable connection is closed and the next accept waits for
/// a close. If every connection has a request in progress, new ones wait in the listen backlog.
struct ConnectionCap: AvailableConnectionsDelegate {
    let table: ConnectionTable
    let maxConnections: Int
    private var open = 0

    init(table: ConnectionTable, maxConnections: Int) {
        self.table = table
        self.maxConnections = maxConnections
    }

    mutating func connectionOpened() { open += 1 }
    mutating func connectionClosed() { open -= 1 }

    func isAcceptingNewConnections() -> Bool {
        if open < maxConnections { return true }
        table.evictStalest()
        return false
    }
}

/// Hummingbird's HTTP/1 child channel with the connection guard in its pipeline: a byte observer
/// in front of the HTTP decoder (a request has begun) and `ConnectionGuardHandler` right after it.
struct GuardedHTTP1Channel: ServerChildChannel {
    typealias Value = HTTP1Channel.Value

    let inner: HTTP1Channel
    let limits: ConnectionLimits
    let table: ConnectionTable

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        let (limits, table) = (self.limits, self.table)
        // HTTP1Channel completes its setup synchronously on the channel's loop; the guard goes in
        // before the first read.
        return inner.setup(channel: channel, logger: logger).flatMapThrowing { value in
            let pipeline = channel.pipeline.syncOperations
            let guardHandler = ConnectionGuardHandler(limits: limits, table: table)
            let decoder = try pipeline.handler(type: ByteToMessageHandler<HTTPRequestDecoder>.self)
            try pipeline.addHandler(guardHandler, position: .after(decoder))
            try pipeline.addHandler(RequestBytesObserver(guardHandler: guardHandler), position: .first)
            return value
        }
    }

    func handle(value: Value, logger: Logger) async {
        await inner.handle(value: value, logger: logger)
    }
}

/// First in the pipeline: tells the guard that bytes arrived, which starts the header timeout of
/// a request on a kept-alive connection.
final class RequestBytesObserver: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private let guardHandler: ConnectionGuardHandler

    init(guardHandler: ConnectionGuardHandler) {
        self.guardHandler = guardHandler
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guardHandler.bytesArrived()
        context.fireChannelRead(data)
    }
}

/// One connection's timeouts, after the HTTP/1 decoder (it sees request heads with their version):
/// the header, body and idle timeouts as `ConnectionLimits` describes, the connection's phase in
/// the table for the cap, and `Connection: close` honoured for HTTP/1.0 requests without
/// keep-alive (the HTTP types behind it no longer carry the version).
final class ConnectionGuardHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private let limits: ConnectionLimits
    private let table: ConnectionTable
    private var context: ChannelHandlerContext?
    private var phase = ConnectionTable.Phase.fresh
    private var timer: Scheduled<Void>?
    /// Keep-alive of each request whose response has not ended yet, oldest first (pipelining).
    private var keepAlive: [Bool] = []

    init(limits: ConnectionLimits, table: ConnectionTable) {
        self.limits = limits
        self.table = table
    }

    private var id: ObjectIdentifier { ObjectIdentifier(self) }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        table.add(id, channel: context.channel)
        arm(limits.headerTimeout)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        self.context = nil
        table.remove(id)
    }

    func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        table.remove(id)
        context.fireChannelInactive()
    }

    /// Called by `RequestBytesObserver` before the decoder sees the bytes.
    func bytesArrived() {
        switch phase {
        case .idle:
            enter(.readingHead, timeout: limits.headerTimeout)
        case .fresh:
            // The header timeout has run since accept; it is not restarted by the first byte.
            phase = .readingHead
            table.update(id, .readingHead)
        case .readingHead, .readingBody, .busy:
            break
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            keepAlive.append(head.isKeepAlive)
            enter(.readingBody, timeout: limits.bodyTimeout)
        case .body:
            break
        case .end:
            // A response may have ended before its request did (a route that ignores the body).
            if keepAlive.isEmpty { enter(.idle, timeout: limits.idleTimeout) } else { enter(.busy, timeout: nil) }
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head(var head) where keepAlive.first == false:
            head.headers.replaceOrAdd(name: "connection", value: "close")
            context.write(wrapOutboundOut(.head(head)), promise: promise)
        case .head, .body:
            context.write(data, promise: promise)
        case .end:
            let close = keepAlive.isEmpty ? false : !keepAlive.removeFirst()
            if close {
                let written = promise ?? context.eventLoop.makePromise()
                context.write(data, promise: written)
                let channel = context.channel
                written.futureResult.whenComplete { _ in channel.close(promise: nil) }
            } else {
                context.write(data, promise: promise)
            }
            if keepAlive.isEmpty, phase == .busy {
                enter(.idle, timeout: limits.idleTimeout)
            }
        }
    }

    private func enter(_ next: ConnectionTable.Phase, timeout: Duration?) {
        phase = next
        table.update(id, next)
        timer?.cancel()
        timer = nil
        if let timeout { arm(timeout) }
    }

    private func arm(_ timeout: Duration) {
        guard let context else { return }
        timer?.cancel()
        timer = context.eventLoop.assumeIsolated().scheduleTask(in: TimeAmount(timeout)) { [self] in
            expired()
        }
    }

    private func expired() {
        guard let context else { return }
        let reason: ConnectionCloseReason
        switch phase {
        case .fresh, .readingHead: reason = .headerTimeout
        case .readingBody: reason = .bodyTimeout
        case .idle: reason = .idleTimeout
        case .busy: return
        }
        table.metrics.increment(SomaMetrics.Name.connectionsClosed, [("reason", reason.rawValue)])
        if reason == .bodyTimeout {
            // The handler reading the body sees this error and answers 408; nothing more will
            // arrive, so the connection closes after.
            context.fireErrorCaught(RequestBodyTimeout())
        }
        context.close(promise: nil)
    }
}
