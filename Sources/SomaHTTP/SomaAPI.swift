import Foundation
import HTTPTypes
import Hummingbird
import Logging
import Soma

/// The v1 contract's routes (ARCHITECTURE §4) over the engine's services.
struct SomaAPI: Sendable {
    let configuration: ServerConfiguration
    let service: AnalysisService
    let store: any Store
    /// With PostgreSQL: where entries go while it is unavailable.
    let outbox: Outbox?
    let limiter: any RateLimiter
    let metrics: SomaMetrics
    let profiles: ProfileService
    let warmer: CacheWarmer
    let readiness: Readiness
    let activeUsers: ActiveUsers
    let startedAt: ContinuousClock.Instant
    let version: String
    /// Renders `/metrics` (refreshing process gauges first); `degraded` is what `/health` reports.
    let metricsText: @Sendable (_ degraded: Bool) -> [UInt8]

    func register(on router: Router<SomaRequestContext>) {
        router.get("/health") { _, context in try await health(context) }
        router.get("/ready") { _, context in try await ready(context) }
        router.get("/metrics") { _, _ in
            // The same probe as /health, so soma_instance_status and /health never disagree.
            let degraded = await dependencies().degraded
            var buffer = ByteBuffer()
            buffer.writeBytes(metricsText(degraded))
            return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"], body: .init(byteBuffer: buffer))
        }

        let v1 = router.group("v1").add(middleware: IdentityMiddleware(serviceToken: configuration.serviceToken, activeUsers: activeUsers))
        v1.post("analyze") { request, context in
            let body = try await JSONIO.decode(AnalyzeBody.self, from: request, limit: configuration.maxBodyBytes)
            return try await analyze(body.text, modules: Validation.modules(body.modules, field: "modules"), request: request, context: context)
        }
        v1.post("analyze/batch") { request, context in try await batch(request, context) }
        for (path, module) in [("emotion", Module.emotion), ("reasoning", .reasoning), ("values", .values), ("theory-of-mind", .theoryOfMind), ("narrative", .narrative)] {
            v1.post(RouterPath(stringLiteral: path)) { request, context in
                let body = try await JSONIO.decode(TextBody.self, from: request, limit: configuration.maxBodyBytes)
                return try await analyze(body.text, modules: [module], request: request, context: context)
            }
        }
        v1.post("entries") { request, context in try await createEntry(request, context) }
        v1.get("entries") { request, context in try await listEntries(request, context) }
        v1.delete("entries/:id") { request, context in try await deleteEntry(request, context) }
        v1.delete("user") { request, context in try await eraseUser(request, context) }
        v1.get("profile") { request, context in try await profile(request, context) }

        let admin = router.group("admin").add(middleware: AdminMiddleware(adminToken: configuration.adminToken))
        admin.get("models") { _, context in try await models(context) }
        admin.post("models/:module/load") { _, context in try await loadModel(context, load: true) }
        admin.post("models/:module/unload") { _, context in try await loadModel(context, load: false) }
        admin.post("init-schema") { _, context in
            try await store.migrate()
            return reply(.ok, context) { w in w.key("schema"); w.string("ok") }
        }
        admin.post("cache/warm") { request, context in try await warm(request, context) }
    }

    // MARK: Analysis

    private func analyze(_ text: String, modules: [Module], request: Request, context: SomaRequestContext) async throws -> Response {
        let identity = context.identity!
        try Validation.text(text, field: "text", limits: configuration.tiers[identity.tier], tier: identity.tier)
        let deadline = try deadline(request)
        try await spend(context, cost: 1)
        let outcome = try await run(text, modules: modules, identity: identity, deadline: deadline)
        let body = JSONIO.object { w in
            writeEnvelope(&w, outcome, context: context)
        }
        return JSONIO.response(.ok, body)
    }

    private func batch(_ request: Request, _ context: SomaRequestContext) async throws -> Response {
        let identity = context.identity!
        let limits = configuration.tiers[identity.tier]
        let body = try await JSONIO.decode(BatchBody.self, from: request, limit: configuration.maxBodyBytes)
        guard !body.items.isEmpty else { throw APIError(.validationFailed, "items must hold at least one item", field: "items") }
        guard body.items.count <= limits.maxBatchItems else {
            throw APIError(.validationFailed, "items holds \(body.items.count); the \(identity.tier.rawValue) tier allows \(limits.maxBatchItems)", field: "items")
        }
        let defaults = try Validation.modules(body.modules, field: "modules")
        let deadline = try deadline(request)
        try await spend(context, cost: body.items.count)
        var w = JSONWriter(capacity: 2048 * body.items.count)
        w.beginObject()
        w.key("request_id"); w.string(context.requestID)
        w.key("user_id"); w.string(identity.user)
        w.key("model_version"); w.string(service.modelVersion)
        w.key("items"); w.beginArray()
        for (i, item) in body.items.enumerated() {
            w.beginObject()
            do {
                let modules = try item.modules.map { try Validation.modules($0, field: "items[\(i)].modules") } ?? defaults
                try Validation.text(item.text, field: "items[\(i)].text", limits: limits, tier: identity.tier)
                let outcome = try await run(item.text, modules: modules, identity: identity, deadline: deadline)
                writeEnvelope(&w, outcome, context: context)
            } catch var error as APIError {
                error.requestID = context.requestID
                w.key("error"); JSONIO.writeError(&w, error)
            }
            w.endObject()
        }
        w.endArray()
        w.endObject()
        return JSONIO.response(.ok, w.bytes)
    }

    /// Runs one analysis, turning refusals into the contract's errors.
    private func run(_ text: String, modules: [Module], identity: Identity, deadline: Duration) async throws -> AnalysisOutcome {
        do {
            return try await service.analyze(AnalysisRequest(text: text, modules: modules, user: identity.user, tier: identity.tier, deadline: deadline))
        } catch let refusal as AdmissionRefusal {
            switch refusal.reason {
            case .userConcurrency:
                metrics.rateLimited(tier: identity.tier)
                throw APIError(.rateLimited, "too many concurrent requests for this user (the \(identity.tier.rawValue) tier allows \(configuration.tiers[identity.tier].maxInFlightPerUser))", retryAfter: refusal.retryAfter)
            case .overloaded, .shed, .expired:
                metrics.shed(tier: identity.tier)
                throw APIError(.overloaded, "the service is overloaded; retry later", retryAfter: refusal.retryAfter)
            }
        } catch let failure as AnalysisServiceError {
            throw failure.reason == .deadline
                ? APIError(.deadlineExceeded, "no answer was possible before the deadline")
                : APIError(.internal, "internal error")
        }
    }

    private func writeEnvelope(_ w: inout JSONWriter, _ outcome: AnalysisOutcome, context: SomaRequestContext) {
        w.key("request_id"); w.string(context.requestID)
        w.key("user_id"); w.string(context.identity?.user ?? "")
        w.key("model_version"); w.string(service.modelVersion)
        w.key("cached"); w.bool(outcome.cached)
        w.key("cache"); w.beginObject()
        for module in outcome.cache.keys.sorted() {
            w.key(module.rawValue); w.string(outcome.cache[module]!.rawValue)
        }
        w.endObject()
        w.key("degraded"); w.bool(outcome.degraded != nil)
        if let reason = outcome.degraded { w.key("degraded_reason"); w.string(reason.rawValue) }
        w.key("results"); outcome.writeResults(to: &w)
        w.key("timings_ms"); w.beginObject()
        for (name, ms) in outcome.timings { w.key(name); w.number(ms) }
        w.endObject()
    }

    /// The request's deadline on the service's time line: `X-Request-Deadline-Ms`, capped, or the default.
    private func deadline(_ request: Request) throws -> Duration {
        var timeout = configuration.defaultDeadline
        if let raw = request.headers[.requestDeadline] {
            guard let ms = Int(raw), ms > 0 else {
                throw APIError(.invalidRequest, "X-Request-Deadline-Ms must be a positive integer", field: "X-Request-Deadline-Ms")
            }
            timeout = min(.milliseconds(ms), configuration.maxDeadline)
        }
        return service.now() + timeout
    }

    // MARK: Rate limit

    /// Spends `cost` of the caller's budget; the decision goes out as `RateLimit-*` on whatever
    /// the answer turns out to be (the identity middleware adds them).
    @discardableResult
    private func spend(_ context: SomaRequestContext, cost: Int) async throws -> RateLimitDecision {
        let identity = context.identity!
        let decision = await limiter.acquire(user: identity.user, tier: identity.tier, cost: cost)
        context.rateLimit?.record(decision)
        guard decision.allowed else {
            metrics.rateLimited(tier: identity.tier)
            throw APIError(.rateLimited, decision.reason?.description ?? "rate limit exceeded", retryAfter: decision.retryAfter ?? decision.resetAfter)
        }
        return decision
    }

    // MARK: Entries and profile

    private func createEntry(_ request: Request, _ context: SomaRequestContext) async throws -> Response {
        let identity = context.identity!
        let body = try await JSONIO.decode(TextBody.self, from: request, limit: configuration.maxBodyBytes)
        try Validation.text(body.text, field: "text", limits: configuration.tiers[identity.tier], tier: identity.tier)
        var key: String?
        if let given = request.headers[.idempotencyKey] {
            guard (1...255).contains(given.utf8.count), given.utf8.allSatisfy({ $0 >= 0x20 && $0 < 0x7f }) else {
                throw APIError(.invalidRequest, "Idempotency-Key must be 1 to 255 printable ASCII characters", field: "Idempotency-Key")
            }
            key = given
        }
        let deadline = try deadline(request)
        try await spend(context, cost: 1)
        let outcome = try await run(body.text, modules: Module.allCases, identity: identity, deadline: deadline)
        if outcome.degraded != nil {
            // An entry is stored with its full analysis or not at all: never partial data.
            metrics.shed(tier: identity.tier)
            throw APIError(.overloaded, "the analysis could not finish in time; the entry was not stored, retry later", retryAfter: .seconds(1))
        }
        let now = UnixMilliseconds.rounded(Date())
        let entry = Entry(id: EntryID.generate(now: now), userID: identity.user, text: body.text, createdAt: now, analysis: outcome.resultsJSON(), modelVersion: service.modelVersion)
        var persisted = "stored"
        let stored: EntryInsertResult
        if let outbox, let key, let queued = try outbox.queued(user: identity.user, idempotencyKey: key) {
            // The same write is already waiting in the outbox: answer as the first time.
            (stored, persisted) = (.existing(queued), "queued")
        } else if let outbox, outbox.pendingCount > 0 {
            // While a backlog drains, new writes queue behind it: the database receives every
            // instance's writes in the order they were acknowledged.
            (stored, persisted) = (try outbox.enqueue(entry, idempotencyKey: key), "queued")
        } else {
            do {
                try await store.recordUser(identity.user, tier: identity.tier)
                stored = try await store.insertEntry(entry, idempotencyKey: key)
            } catch let error as StoreError where error.code == .unavailable && outbox != nil {
                // PostgreSQL is unavailable: the entry is durable in this instance's outbox
                // (fsync'd) and replayed in order once the database answers.
                stored = try outbox!.enqueue(entry, idempotencyKey: key)
                persisted = "queued"
            }
        }
        if case .inserted = stored {
            metrics.increment(SomaMetrics.Name.entriesWritten, [("persisted", persisted)])
            await invalidateProfile(identity.user)
        }
        let response = JSONIO.object { w in
            w.key("request_id"); w.string(context.requestID)
            w.key("user_id"); w.string(identity.user)
            w.key("persisted"); w.string(persisted)
            w.key("entry"); writeEntry(&w, stored.entry)
        }
        return JSONIO.response(persisted == "stored" ? .created : .accepted, response)
    }

    private func listEntries(_ request: Request, _ context: SomaRequestContext) async throws -> Response {
        let identity = context.identity!
        var limit = 50
        if let raw = request.uri.queryParameters.get("limit") {
            guard let n = Int(raw), (1...200).contains(n) else {
                throw APIError(.invalidRequest, "limit must be an integer from 1 to 200", field: "limit")
            }
            limit = n
        }
        let cursor = request.uri.queryParameters.get("cursor")
        try await spend(context, cost: 1)
        let page = try await store.entries(user: identity.user, limit: limit, cursor: cursor)
        let body = JSONIO.object { w in
            w.key("request_id"); w.string(context.requestID)
            w.key("user_id"); w.string(identity.user)
            w.key("entries"); w.beginArray()
            for entry in page.entries { writeEntry(&w, entry) }
            w.endArray()
            w.key("next_cursor")
            if let next = page.nextCursor { w.string(next) } else { w.null() }
        }
        return JSONIO.response(.ok, body)
    }

    private func deleteEntry(_ request: Request, _ context: SomaRequestContext) async throws -> Response {
        let identity = context.identity!
        let id = context.parameters.get("id") ?? ""
        try await spend(context, cost: 1)
        guard try await store.deleteEntry(user: identity.user, id: id) else {
            throw APIError(.notFound, "no entry \(id.prefix(64)) for this user")
        }
        await invalidateProfile(identity.user)
        let body = JSONIO.object { w in
            w.key("request_id"); w.string(context.requestID)
            w.key("user_id"); w.string(identity.user)
            w.key("id"); w.string(id)
            w.key("deleted"); w.bool(true)
        }
        return JSONIO.response(.ok, body)
    }

    private func eraseUser(_ request: Request, _ context: SomaRequestContext) async throws -> Response {
        let identity = context.identity!
        try await spend(context, cost: 1)
        var erased = try await store.deleteUser(identity.user)
        // Queued writes too: a replay after the erase must not bring them back.
        erased.entries += try outbox?.deleteUser(identity.user) ?? 0
        let cacheEntries = await service.cache.invalidateUser(identity.user)
        let body = JSONIO.object { w in
            w.key("request_id"); w.string(context.requestID)
            w.key("user_id"); w.string(identity.user)
            w.key("erased"); w.beginObject()
            w.key("entries"); w.number(erased.entries)
            w.key("profiles"); w.number(erased.profiles)
            w.key("cache_entries"); w.number(cacheEntries)
            w.endObject()
        }
        return JSONIO.response(.ok, body)
    }

    private func profile(_ request: Request, _ context: SomaRequestContext) async throws -> Response {
        let identity = context.identity!
        try await spend(context, cost: 1)
        let (document, cached) = try await profiles.document(for: identity.user)
        let body = JSONIO.object { w in
            w.key("request_id"); w.string(context.requestID)
            w.key("user_id"); w.string(identity.user)
            w.key("cached"); w.bool(cached)
            // The cached document is an object holding updated_at and profile: splice its members.
            w.rawMembers(document.dropFirst().dropLast())
        }
        return JSONIO.response(.ok, body)
    }

    private func invalidateProfile(_ user: String) async {
        await service.cache.invalidateUser(user)
    }

    private func writeEntry(_ w: inout JSONWriter, _ entry: Entry) {
        w.beginObject()
        w.key("id"); w.string(entry.id)
        w.key("created_at"); w.string(Self.timestamp(entry.createdAt))
        w.key("text"); w.string(entry.text)
        w.key("model_version"); w.string(entry.modelVersion)
        w.key("results"); w.raw(entry.analysis)
        w.endObject()
    }

    static func timestamp(_ date: Date) -> String {
        date.formatted(.iso8601.year().month().day().dateSeparator(.dash).time(includingFractionalSeconds: true).timeSeparator(.colon).timeZone(separator: .omitted))
    }

    // MARK: Operations

    /// The dependencies as `/health` reports them: the store probed (through its breaker when remote),
    /// Redis as its breaker sees it (nil without Redis). Degraded when either is not up.
    private func dependencies() async -> (storeUp: Bool, redisState: String?, degraded: Bool) {
        let storeUp = await store.isHealthy()
        let cache = service.cache
        let redisState = cache.remote == nil ? nil : (cache.remoteHealthy ? "up" : "fallback")
        return (storeUp, redisState, !storeUp || redisState == "fallback")
    }

    private func health(_ context: SomaRequestContext) async throws -> Response {
        let (storeUp, redisState, degraded) = await dependencies()
        let phase = readiness.current
        let body = JSONIO.object { w in
            w.key("status"); w.string(degraded ? "degraded" : "ok")
            w.key("instance_id"); w.string(configuration.instanceID)
            w.key("version"); w.string(version)
            w.key("model_version"); w.string(service.modelVersion)
            w.key("uptime_seconds"); w.number(Double((ContinuousClock.now - startedAt).components.seconds))
            w.key("draining"); w.bool(phase == .draining)
            w.key("dependencies"); w.beginObject()
            w.key("store"); w.beginObject()
            w.key("kind"); w.string(outbox == nil ? "sqlite" : "postgres")
            // With PostgreSQL down, writes go to the outbox: the fallback serves.
            w.key("state"); w.string(storeUp ? "up" : outbox == nil ? "down" : "fallback")
            w.endObject()
            if let outbox {
                w.key("outbox"); w.beginObject()
                w.key("kind"); w.string("sqlite")
                w.key("state"); w.string("up")
                w.key("pending"); w.number(outbox.pendingCount)
                w.endObject()
            }
            w.key("cache"); w.beginObject()
            w.key("kind"); w.string("memory")
            w.key("state"); w.string("up")
            w.endObject()
            if let redisState {
                w.key("redis"); w.beginObject()
                w.key("kind"); w.string("redis")
                w.key("state"); w.string(redisState)
                w.endObject()
            }
            w.endObject()
        }
        return JSONIO.response(.ok, body)
    }

    private func ready(_ context: SomaRequestContext) async throws -> Response {
        var status = readiness.current.rawValue
        var reason: String?
        switch readiness.current {
        case .starting: reason = "the instance is starting"
        case .draining: reason = "the instance is shutting down"
        case .ready:
            // Local state (the embedded store, the state directory): if it cannot serve, this
            // instance cannot either. Remote dependencies never make an instance unready.
            if !FileManager.default.isWritableFile(atPath: configuration.stateDirectory.path) {
                (status, reason) = ("not_ready", "the state directory is not writable")
            } else if outbox == nil, !(await store.isHealthy()) {
                // The embedded store is local state; a remote database never makes an instance
                // unready (writes queue in the outbox, which lives in the state directory).
                (status, reason) = ("not_ready", "local state is not usable")
            }
        }
        let body = JSONIO.object { w in
            w.key("status"); w.string(status)
            w.key("instance_id"); w.string(configuration.instanceID)
            if let reason { w.key("reason"); w.string(reason) }
        }
        return JSONIO.response(reason == nil ? .ok : .serviceUnavailable, body, headers: reason == nil ? [:] : [.retryAfter: "1"])
    }

    private func models(_ context: SomaRequestContext) async throws -> Response {
        let states = await service.registry.states()
        return reply(.ok, context) { w in
            w.key("models"); w.beginArray()
            for state in states { writeModel(&w, state) }
            w.endArray()
        }
    }

    private func loadModel(_ context: SomaRequestContext, load: Bool) async throws -> Response {
        let name = context.parameters.get("module") ?? ""
        guard let module = Module(name: name) else {
            throw APIError(.unknownModule, "unknown module \"\(name.prefix(64))\"", field: "module")
        }
        let before = await service.registry.state(of: module)
        if load {
            do { try await service.registry.load(module) } catch {
                throw APIError(.internal, "the model could not be loaded")
            }
        } else {
            _ = await service.unload(module)
        }
        let after = await service.registry.state(of: module)
        return reply(.ok, context) { w in
            w.key("changed"); w.bool(before.loaded != after.loaded)
            w.key("model"); writeModel(&w, after)
        }
    }

    private func writeModel(_ w: inout JSONWriter, _ state: ModelRegistry.ModelState) {
        w.beginObject()
        w.key("module"); w.string(state.module.rawValue)
        w.key("loaded"); w.bool(state.loaded)
        w.key("loading"); w.bool(state.loading)
        w.key("in_use"); w.number(state.inUse)
        w.key("bytes"); w.number(state.bytes)
        w.key("loads"); w.number(state.loads)
        w.key("unloads"); w.number(state.unloads)
        w.key("load_failures"); w.number(state.loadFailures)
        w.endObject()
    }

    private func warm(_ request: Request, _ context: SomaRequestContext) async throws -> Response {
        let raw = try await JSONIO.body(of: request, limit: configuration.maxBodyBytes * 16, requireJSON: false)
        var body = WarmBody(texts: nil, modules: nil, users: nil)
        if !raw.isEmpty {
            guard let type = request.headers[.contentType], JSONIO.isJSON(type) else {
                throw APIError(.unsupportedMediaType, "the body must be JSON (Content-Type: application/json)")
            }
            do { body = try JSONDecoder().decode(WarmBody.self, from: Data(raw)) } catch let error as DecodingError {
                throw JSONIO.apiError(error)
            }
        }
        let modules = try Validation.modules(body.modules, field: "modules")
        if let users = body.users, !(0...10_000).contains(users) {
            throw APIError(.validationFailed, "users must be from 0 to 10000", field: "users")
        }
        var report: CacheWarmer.Report
        let given = body.texts ?? []
        do {
            report = try await warmer.warm(texts: CacheWarmer.rankedByFrequency(given), modules: modules, users: body.users ?? 0, deadline: configuration.maxDeadline)
            report.skipped += given.count { !$0.contains(where: { !$0.isWhitespace }) }
        } catch is AdmissionRefusal {
            throw APIError(.overloaded, "the service is overloaded; warm later", retryAfter: .seconds(1))
        }
        return reply(.ok, context) { w in
            w.key("texts"); w.number(report.texts)
            w.key("entries"); w.number(report.entries)
            w.key("skipped"); w.number(report.skipped)
            w.key("users"); w.number(report.users)
        }
    }

    private func reply(_ status: HTTPResponse.Status, _ context: SomaRequestContext, _ members: (inout JSONWriter) -> Void) -> Response {
        JSONIO.response(status, JSONIO.object { w in
            w.key("request_id"); w.string(context.requestID)
            members(&w)
        })
    }
}
