import CHiredis
import Dispatch
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// What a connection needs to (re)connect: a copy of the client's configuration.
struct RedisConnectionSettings: Sendable {
    var url: RedisURL
    var connectTimeout: Duration
    var commandTimeout: Duration
    var clientName: String?
}

/// One pooled connection: a hiredis context (absent until first use, and after a failure) plus the
/// serial `DispatchQueue` on which every blocking hiredis call for it runs.
///
/// Thread safety: the context pointer (not `Sendable`) lives only inside `state`, a `Mutex`, and is only
/// touched inside `state.withLock` — on `queue` for I/O, or in `deinit` when nobody else can reach it.
/// So no `@unchecked Sendable` is needed. The pool additionally leases a connection to one caller at a
/// time, so the lock is never contended in practice; it is what makes the sharing provably safe.
final class RedisConnection: PooledConnection {
    static func closedError() -> any Error { RedisError(.closed, "the Redis client is closed") }

    struct State {
        var context: UnsafeMutablePointer<redisContext>?
        /// `counters.failureEpoch` when `context` was connected.
        var epoch = 0
    }

    let id: Int
    private let settings: RedisConnectionSettings
    private let counters: PoolCounters
    private let queue: DispatchQueue
    private let state = Mutex(State())

    init(id: Int, settings: RedisConnectionSettings, counters: PoolCounters) {
        self.id = id
        self.settings = settings
        self.counters = counters
        // A serial queue of our own: blocking socket calls never run on the Swift cooperative pool or NIO loops.
        self.queue = DispatchQueue(label: "soma.redis.connection.\(id)")
    }

    deinit {
        state.withLock { state in
            if let context = state.context {
                redisFree(context)
                state.context = nil
                counters.didClose()
            }
        }
    }

    /// Runs `body` with a connected context on this connection's queue, connecting first when needed.
    ///
    /// A connect, I/O, timeout or protocol failure closes the context (`redisFree`); the next call
    /// reconnects. Server error replies are not failures here: they are ordinary ``RedisReply`` values.
    func run<T: Sendable>(_ body: @escaping @Sendable (HiredisContext) throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            queue.async { [self] in
                let result: Result<T, any Error> = withSIGPIPEBlocked {
                    state.withLock { state in
                        do {
                            let context = try connectedContext(&state)
                            return .success(try body(HiredisContext(pointer: context)))
                        } catch let error as RedisError {
                            switch error.code {
                            case .timeout, .io, .protocol, .connect:
                                discard(&state)
                                if error.code != .timeout { counters.didFail() }
                            case .closed, .invalidURL, .server:
                                break
                            }
                            return .failure(error)
                        } catch {
                            return .failure(error)
                        }
                    }
                }
                continuation.resume(with: result)
            }
        }
    }

    /// Closes the context (if any) on the connection's queue, after any work already queued.
    func shutdown() {
        queue.async { [self] in
            state.withLock { discard(&$0) }
        }
    }

    // MARK: - On the queue, under the lock

    private func discard(_ state: inout State) {
        if let context = state.context {
            redisFree(context)
            state.context = nil
            counters.didClose()
        }
    }

    private func connectedContext(_ state: inout State) throws -> UnsafeMutablePointer<redisContext> {
        let epoch = counters.failureEpoch.load(ordering: .relaxed)
        if let context = state.context {
            if state.epoch >= epoch { return context }
            discard(&state)  // connected before a pool-wide failure: probably stale
        }
        let context = try connect()
        state.context = context
        state.epoch = epoch
        counters.didOpen()
        return context
    }

    /// `redisConnectWithTimeout`, `redisSetTimeout`, then AUTH / SELECT / CLIENT SETNAME (pipelined).
    private func connect() throws -> UnsafeMutablePointer<redisContext> {
        let url = settings.url
        let endpoint = url.host.contains(":") ? "[\(url.host)]:\(url.port)" : "\(url.host):\(url.port)"
        guard let context = redisConnectWithTimeout(url.host, Int32(url.port), makeTimeval(settings.connectTimeout)) else {
            throw RedisError(.connect, "connecting to \(endpoint): could not allocate a context")
        }
        if context.pointee.err != 0 {
            let message = HiredisContext(pointer: context).errorString
            redisFree(context)
            throw RedisError(.connect, "connecting to \(endpoint): \(message)")
        }
        let connection = HiredisContext(pointer: context)
        do {
            if redisSetTimeout(context, makeTimeval(settings.commandTimeout)) != REDIS_OK {
                throw RedisError(.connect, "connecting to \(endpoint): setting the command timeout failed: \(connection.errorString)")
            }
            var setup: [(name: String, args: [RedisValue])] = []
            if let password = url.password {
                let args: [RedisValue] = url.username.map { ["AUTH", .string($0), .string(password)] } ?? ["AUTH", .string(password)]
                setup.append(("AUTH", args))
            }
            if url.database != 0 { setup.append(("SELECT \(url.database)", ["SELECT", .integer(url.database)])) }
            if let name = settings.clientName { setup.append(("CLIENT SETNAME", ["CLIENT", "SETNAME", .string(name)])) }
            guard !setup.isEmpty else { return context }
            for step in setup { try connection.append(step.args) }
            var firstError: RedisError?
            for step in setup {
                let reply = try connection.readReply()
                if case .error(let message) = reply, firstError == nil {
                    firstError = RedisError(.connect, "connecting to \(endpoint): \(step.name) failed: \(message)")
                }
            }
            if let firstError { throw firstError }
            return context
        } catch {
            redisFree(context)
            throw error
        }
    }
}

/// A borrowed hiredis context: only valid inside ``RedisConnection/run(_:)``.
struct HiredisContext {
    let pointer: UnsafeMutablePointer<redisContext>

    /// Sends one command and reads its reply.
    func command(_ args: [RedisValue]) throws -> RedisReply {
        try append(args)
        return try readReply()
    }

    /// Queues a command in hiredis' output buffer (`redisAppendCommandArgv`); nothing is sent yet.
    func append(_ args: [RedisValue]) throws {
        let chunks = args.map(\.wireBytes)
        let total = chunks.reduce(0) { $0 + $1.count }
        // One contiguous copy of every argument; `argvlen` carries the lengths, so NUL bytes are fine.
        let storage = UnsafeMutableBufferPointer<CChar>.allocate(capacity: max(total, 1))
        defer { storage.deallocate() }
        var argv: [UnsafePointer<CChar>?] = []
        var lengths: [Int] = []
        argv.reserveCapacity(chunks.count)
        lengths.reserveCapacity(chunks.count)
        var offset = 0
        for chunk in chunks {
            let start = storage.baseAddress! + offset
            chunk.withUnsafeBytes { source in
                if let base = source.baseAddress, source.count > 0 {
                    UnsafeMutableRawPointer(start).copyMemory(from: base, byteCount: source.count)
                }
            }
            argv.append(UnsafePointer(start))
            lengths.append(chunk.count)
            offset += chunk.count
        }
        let status = argv.withUnsafeMutableBufferPointer { argvBuffer in
            lengths.withUnsafeBufferPointer { lengthBuffer in
                redisAppendCommandArgv(pointer, Int32(chunks.count), argvBuffer.baseAddress, lengthBuffer.baseAddress)
            }
        }
        if status != REDIS_OK { throw RedisError(.io, "queueing a command failed: \(errorString)") }
    }

    /// Flushes the output buffer if needed and reads the next reply (`redisGetReply`).
    func readReply() throws -> RedisReply {
        var raw: UnsafeMutableRawPointer?
        let status = redisGetReply(pointer, &raw)
        let savedErrno = errno
        guard status == REDIS_OK else { throw failure(errno: savedErrno) }
        guard let raw else { throw RedisError(.protocol, "hiredis returned no reply") }
        defer { freeReplyObject(raw) }
        return try Self.decode(UnsafePointer(raw.assumingMemoryBound(to: redisReply.self)))
    }

    /// `redisContext.errstr` (a `char[128]` tuple) as a string.
    var errorString: String {
        withUnsafeBytes(of: pointer.pointee.errstr) { raw in
            let bytes = raw.prefix { $0 != 0 }
            return String(decoding: bytes, as: UTF8.self)
        }
    }

    /// Maps the context's error state to a ``RedisError``.
    private func failure(errno savedErrno: Int32) -> RedisError {
        let message = errorString
        switch pointer.pointee.err {
        case REDIS_ERR_IO:
            // A blocking socket with SO_RCVTIMEO/SO_SNDTIMEO fails with EAGAIN when the timeout expires;
            // hiredis 0.14 reports it as a plain I/O error ("Resource temporarily unavailable").
            if savedErrno == EAGAIN || savedErrno == EWOULDBLOCK || message.contains("temporarily unavailable") {
                return RedisError(.timeout, "no answer within the command timeout (\(message))")
            }
            return RedisError(.io, message.isEmpty ? "I/O error" : message)
        case REDIS_ERR_EOF:
            return RedisError(.io, message.isEmpty ? "server closed the connection" : message)
        case REDIS_ERR_PROTOCOL:
            return RedisError(.protocol, message)
        default:
            return RedisError(.io, message.isEmpty ? "hiredis error \(pointer.pointee.err)" : message)
        }
    }

    private static func decode(_ reply: UnsafePointer<redisReply>) throws -> RedisReply {
        func bytes() -> [UInt8] {
            guard let string = reply.pointee.str, reply.pointee.len > 0 else { return [] }
            return Array(UnsafeRawBufferPointer(start: string, count: reply.pointee.len))
        }
        switch reply.pointee.type {
        case REDIS_REPLY_STRING:
            return .bulk(bytes())
        case REDIS_REPLY_STATUS:
            return .status(String(decoding: bytes(), as: UTF8.self))
        case REDIS_REPLY_ERROR:
            return .error(String(decoding: bytes(), as: UTF8.self))
        case REDIS_REPLY_INTEGER:
            return .integer(Int64(reply.pointee.integer))
        case REDIS_REPLY_NIL:
            return .null
        case REDIS_REPLY_ARRAY:
            let count = reply.pointee.elements
            guard count > 0 else { return .array([]) }
            guard let elements = reply.pointee.element else { throw RedisError(.protocol, "array reply without elements") }
            var result: [RedisReply] = []
            result.reserveCapacity(count)
            for index in 0..<count {
                guard let element = elements[index] else { throw RedisError(.protocol, "null array element") }
                result.append(try decode(UnsafePointer(element)))
            }
            return .array(result)
        default:
            throw RedisError(.protocol, "unknown reply type \(reply.pointee.type)")
        }
    }
}

/// A positive `Duration` as a `timeval` (at least 1 ms: a zero `timeval` would mean "wait forever").
func makeTimeval(_ duration: Duration) -> timeval {
    let (seconds, attoseconds) = duration.components
    let microseconds = attoseconds / 1_000_000_000_000
    if seconds < 0 || (seconds == 0 && microseconds < 1_000) {
        return timeval(tv_sec: 0, tv_usec: 1_000)
    }
    return timeval(tv_sec: Int(seconds), tv_usec: Int(microseconds))
}

/// Runs `body` with SIGPIPE blocked on the current thread.
///
/// hiredis writes with `write(2)`, which raises SIGPIPE (default action: terminate the process) when the
/// server has gone away. Blocking it turns that into an `EPIPE` I/O error; a SIGPIPE that became pending
/// meanwhile is consumed before the old mask is restored, so it is never delivered later.
func withSIGPIPEBlocked<R>(_ body: () throws -> R) rethrows -> R {
    var pipeOnly = sigset_t()
    sigemptyset(&pipeOnly)
    sigaddset(&pipeOnly, SIGPIPE)
    var previous = sigset_t()
    pthread_sigmask(SIG_BLOCK, &pipeOnly, &previous)
    var pendingBefore = sigset_t()
    sigpending(&pendingBefore)
    let wasPending = sigismember(&pendingBefore, SIGPIPE) == 1
    defer {
        if !wasPending {
            var pending = sigset_t()
            sigpending(&pending)
            if sigismember(&pending, SIGPIPE) == 1 {
                var noWait = timespec(tv_sec: 0, tv_nsec: 0)
                _ = sigtimedwait(&pipeOnly, nil, &noWait)
            }
        }
        pthread_sigmask(SIG_SETMASK, &previous, nil)
    }
    return try body()
}
