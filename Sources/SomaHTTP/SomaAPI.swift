import Foundation
import HTTPTypes
import Hummingbird
import Logging
import Soma

/// The v1 contract's routes (docs/ARCHITECTURE.md §7) over the runtime: each handler decodes the
/// request, calls one runtime method and encodes its answer. Policy (durability, failover,
/// caching, rate limits) lives in the runtime; refusals are mapped to the contract's errors by
/// `RequestMiddleware.render`.
struct SomaAPI: Sendable {
    let configuration: HTTPConfiguration
    let runtime: SomaRuntime
    let readiness: Readiness
    let activeUsers: ActiveUsers
    let invalidRequests: InvalidRequestGuard
    let startedAt: ContinuousClock.Instant
    let version: String
    /// Renders `/metrics`; `degraded` is what `/health` reports.
    let metricsText: @Sendable (_ degraded: Bool) -> [UInt8]

    private var tiers: TierPolicy { runtime.configuration.tiers }
    private var modelVersion: String { runtime.analysis.modelVersion }

    func register(on router: Router<SomaRequestContext>) {
        router.get("/health") { _, _ in try await health() }
        router.get("/ready") { _, _ in try await ready() }
        router.get("/metrics") { _, _ in
            // The same probe as /health, so soma_instance_status and /health never disagree.
            let degraded = await runtime.health().degraded
            var buffer = ByteBuffer()
            buffer.writeBytes(metricsText(degraded))
            return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"], body: .init(byteBuffer: buffer))
        }

        let v1 = router.group("v1")
            .add(
                middleware: IdentityMiddleware(
                    serviceToken: configuration.serviceToken, activeUsers: activeUsers, invalidRequests: invalidRequests, metrics: runtime.metrics)
            )
            .group(context: CallerContext.self)
        v1.post("analyze") { request, context in
            let body = try await request.decode(as: AnalyzeBody.self, context: context)
            let modules = try Validation.modules(body.modules, field: "modules")
            try validate(body.text, field: "text", context)
            let outcome = try await runtime.analysis.analyze(body.text, modules: modules, caller: context.caller, deadline: deadline(request))
            return JSONIO.response(.ok, JSONIO.object { w in writeEnvelope(&w, outcome, context: context) })
        }
        v1.post("analyze/batch") { request, context in try await batch(request, context) }
        for (path, module) in [
            ("emotion", Module.emotion), ("reasoning", .reasoning), ("values", .values), ("theory-of-mind", .theoryOfMind), ("narrative", .narrative),
        ] {
            v1.post(RouterPath(stringLiteral: path)) { request, context in
                let body = try await request.decode(as: TextBody.self, context: context)
                try validate(body.text, field: "text", context)
                let outcome = try await runtime.analysis.analyze(body.text, modules: [module], caller: context.caller, deadline: deadline(request))
                return JSONIO.response(.ok, JSONIO.object { w in writeEnvelope(&w, outcome, context: context) })
            }
        }
        v1.post("entries") { request, context in try await createEntry(request, context) }
        // Reads and deletes take the request's deadline for their store calls: a hung database
        // answers 503 by then. Erasing a user takes none (the store's timeout bounds it): an
        // erasure should finish, however many rows; a malformed X-Request-Deadline-Ms is refused
        // everywhere alike.
        v1.get("entries") { request, context in
            try await listEntries(request, context, deadline: deadline(request))
        }
        v1.delete("entries/:id") { request, context in
            try await deleteEntry(context, deadline: deadline(request))
        }
        v1.delete("user") { request, context in
            _ = try deadline(request)
            return try await eraseUser(context)
        }
        v1.get("profile") { request, context in
            try await profile(context, deadline: deadline(request))
        }

        let admin = router.group("admin").add(middleware: AdminMiddleware(adminToken: configuration.adminToken))
        admin.get("models") { _, context in try await models(context) }
        admin.post("models/:module/load") { _, context in try await loadModel(context, load: true) }
        admin.post("models/:module/unload") { _, context in try await loadModel(context, load: false) }
        admin.post("init-schema") { _, context in
            try await runtime.migrate()
            return reply(.ok, context) { w in
                w.key("schema"); w.string("ok")
            }
        }
        admin.post("cache/warm") { request, context in try await warm(request, context) }
    }

    // MARK: Analysis

    /// A text must be non-blank, NUL-free and fit the caller's tier.
    private func validate(_ text: String, field: String, _ context: CallerContext) throws {
        try Validation.text(text, field: field, limits: tiers[context.caller.tier], tier: context.caller.tier)
    }

    private func batch(_ request: Request, _ context: CallerContext) async throws -> Response {
        let caller = context.caller
        let limits = tiers[caller.tier]
        let body = try await request.decode(as: BatchBody.self, context: context)
        guard !body.items.isEmpty else { throw APIError(.validationFailed, "items must hold at least one item", field: "items") }
        guard body.items.count <= limits.maxBatchItems else {
            throw APIError(
                .validationFailed, "items holds \(body.items.count); the \(caller.tier.rawValue) tier allows \(limits.maxBatchItems)", field: "items")
        }
        let defaults = try Validation.modules(body.modules, field: "modules")
        let deadline = try deadline(request)
        // An item that fails validation is that item's error, not the batch's.
        let items: [Analysis.BatchItem] = body.items.enumerated().map { i, item in
            Result {
                let modules = try item.modules.map { try Validation.modules($0, field: "items[\(i)].modules") } ?? defaults
                try Validation.text(item.text, field: "items[\(i)].text", limits: limits, tier: caller.tier)
                return (item.text, modules)
            }
        }
        let results = try await runtime.analysis.analyzeBatch(items, caller: caller, deadline: deadline)
        var w = JSONWriter(capacity: 2048 * body.items.count)
        w.beginObject()
        w.key("request_id"); w.string(context.requestID)
        w.key("user_id"); w.string(caller.user)
        w.key("model_version"); w.string(modelVersion)
        w.key("items"); w.beginArray()
        for result in results {
            w.beginObject()
            switch result {
            case .success(let outcome): writeEnvelope(&w, outcome, context: context)
            case .failure(let error):
                w.key("error")
                JSONIO.writeError(&w, RequestMiddleware.apiError(for: error, requestID: context.requestID, logger: context.logger))
            }
            w.endObject()
        }
        w.endArray()
        w.endObject()
        return JSONIO.response(.ok, w.bytes)
    }

    private func writeEnvelope(_ w: inout JSONWriter, _ outcome: AnalysisOutcome, context: CallerContext) {
        w.key("request_id"); w.string(context.requestID)
        w.key("user_id"); w.string(context.caller.user)
        w.key("model_version"); w.string(modelVersion)
        w.key("cached"); w.bool(outcome.cached)
        w.key("cache"); w.beginObject()
        for (module, source) in outcome.cache.sorted(by: { $0.key < $1.key }) {
            w.key(module.rawValue); w.string(source.rawValue)
        }
        w.endObject()
        w.key("degraded"); w.bool(outcome.degraded != nil)
        if let reason = outcome.degraded { w.key("degraded_reason"); w.string(reason.rawValue) }
        w.key("results"); outcome.writeResults(to: &w)
        w.key("timings_ms"); w.beginObject()
        for (name, ms) in outcome.timings { w.key(name); w.number(ms) }
        w.endObject()
    }

    /// The request's deadline on the runtime's time line: `X-Request-Deadline-Ms`, capped, or the default.
    private func deadline(_ request: Request) throws -> Duration {
        var timeout = configuration.defaultDeadline
        if let raw = request.headers[.requestDeadline] {
            let digits = !raw.isEmpty && raw.utf8.allSatisfy { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }
            guard digits, raw.utf8.contains(where: { $0 != UInt8(ascii: "0") }) else {
                throw APIError(.invalidRequest, "X-Request-Deadline-Ms must be a positive integer", field: "X-Request-Deadline-Ms")
            }
            // Any positive integer is accepted and capped, however many digits it has.
            timeout = Int(raw).map { min(.milliseconds($0), configuration.maxDeadline) } ?? configuration.maxDeadline
        }
        return runtime.analysis.deadline(in: timeout)
    }

    // MARK: Entries and profile

    private func createEntry(_ request: Request, _ context: CallerContext) async throws -> Response {
        let body = try await request.decode(as: TextBody.self, context: context)
        try validate(body.text, field: "text", context)
        let key = try Validation.idempotencyKey(request.headers[fields: .idempotencyKey])
        let write = try await runtime.entries.create(text: body.text, idempotencyKey: key, caller: context.caller, deadline: deadline(request))
        let response = JSONIO.object { w in
            w.key("request_id"); w.string(context.requestID)
            w.key("user_id"); w.string(context.caller.user)
            w.key("persisted"); w.string(write.persisted.rawValue)
            w.key("entry"); writeEntry(&w, write.entry)
        }
        return JSONIO.response(write.persisted == .stored ? .created : .accepted, response)
    }

    private func listEntries(_ request: Request, _ context: CallerContext, deadline: Duration) async throws -> Response {
        var limit = 50
        if let raw = request.uri.queryParameters.get("limit") {
            guard let n = Int(raw), (1...200).contains(n) else {
                throw APIError(.invalidRequest, "limit must be an integer from 1 to 200", field: "limit")
            }
            limit = n
        }
        let page = try await runtime.entries.list(
            caller: context.caller, limit: limit, cursor: request.uri.queryParameters.get("cursor"), deadline: deadline)
        let body = JSONIO.object { w in
            w.key("request_id"); w.string(context.requestID)
            w.key("user_id"); w.string(context.caller.user)
            w.key("entries"); w.beginArray()
            for entry in page.entries { writeEntry(&w, entry) }
            w.endArray()
            w.key("next_cursor")
            if let next = page.nextCursor { w.string(next) } else { w.null() }
        }
        return JSONIO.response(.ok, body)
    }

    private func deleteEntry(_ context: CallerContext, deadline: Duration) async throws -> Response {
        let id = context.parameters.get("id") ?? ""
        guard try await runtime.entries.delete(caller: context.caller, id: id, deadline: deadline) else {
            throw APIError(.notFound, "no entry \(id.prefix(64)) for this user")
        }
        let body = JSONIO.object { w in
            w.key("request_id"); w.string(context.requestID)
            w.key("user_id"); w.string(context.caller.user)
            w.key("id"); w.string(id)
            w.key("deleted"); w.bool(true)
        }
        return JSONIO.response(.ok, body)
    }

    private func eraseUser(_ context: CallerContext) async throws -> Response {
        let erased = try await runtime.entries.erase(caller: context.caller)
        let body = JSONIO.object { w in
            w.key("request_id"); w.string(context.requestID)
            w.key("user_id"); w.string(context.caller.user)
            w.key("erased"); w.beginObject()
            w.key("entries"); w.number(erased.entries)
            w.key("profiles"); w.number(erased.profiles)
            w.key("cache_entries"); w.number(erased.cacheEntries)
            w.endObject()
        }
        return JSONIO.response(.ok, body)
    }

    private func profile(_ context: CallerContext, deadline: Duration) async throws -> Response {
        let (document, cached) = try await runtime.profile(caller: context.caller, deadline: deadline)
        let body = JSONIO.object { w in
            w.key("request_id"); w.string(context.requestID)
            w.key("user_id"); w.string(context.caller.user)
            w.key("cached"); w.bool(cached)
            // The cached document is an object holding updated_at and profile: splice its members.
            w.rawMembers(document.dropFirst().dropLast())
        }
        return JSONIO.response(.ok, body)
    }

    private func writeEntry(_ w: inout JSONWriter, _ entry: Entry) {
        w.beginObject()
        w.key("id"); w.string(entry.id)
        w.key("created_at"); w.string(Timestamp.iso8601(entry.createdAt))
        w.key("text"); w.string(entry.text)
        w.key("model_version"); w.string(entry.modelVersion)
        w.key("results"); w.raw(entry.analysis)
        w.endObject()
    }

    // MARK: Operations

    private func health() async throws -> Response {
        let report = await runtime.health()
        let body = JSONIO.object { w in
            w.key("status"); w.string(report.degraded ? "degraded" : "ok")
            w.key("instance_id"); w.string(runtime.configuration.instanceID)
            w.key("version"); w.string(version)
            w.key("model_version"); w.string(modelVersion)
            w.key("uptime_seconds"); w.number(Double((ContinuousClock.now - startedAt).components.seconds))
            w.key("draining"); w.bool(readiness.current == .draining)
            w.key("dependencies"); w.beginObject()
            for dependency in report.dependencies {
                w.key(dependency.name); w.beginObject()
                w.key("kind"); w.string(dependency.kind)
                w.key("state"); w.string(dependency.state.rawValue)
                if let pending = dependency.pending { w.key("pending"); w.number(pending) }
                if let held = dependency.held { w.key("held"); w.number(held) }
                if let age = dependency.oldestPendingAge { w.key("oldest_pending_seconds"); w.number(Double(age.components.seconds)) }
                if let detail = dependency.detail { w.key("detail"); w.string(detail) }
                w.endObject()
            }
            w.endObject()
        }
        return JSONIO.response(.ok, body)
    }

    private func ready() async throws -> Response {
        var status = readiness.current.rawValue
        var reason: String?
        switch readiness.current {
        case .starting: reason = "the instance is starting"
        case .draining: reason = "the instance is shutting down"
        case .ready:
            // Local state (the embedded store, the state directory): if it cannot serve, this
            // instance cannot either. A remote database never makes an instance unready (writes
            // queue in the outbox, which lives in the state directory).
            if !FileManager.default.isWritableFile(atPath: runtime.configuration.stateDirectory.path) {
                (status, reason) = ("not_ready", "the state directory is not writable")
            } else if runtime.storage.kind == .sqlite, !(await runtime.store.isHealthy()) {
                (status, reason) = ("not_ready", "local state is not usable")
            }
        }
        let body = JSONIO.object { w in
            w.key("status"); w.string(status)
            w.key("instance_id"); w.string(runtime.configuration.instanceID)
            if let reason { w.key("reason"); w.string(reason) }
        }
        return JSONIO.response(reason == nil ? .ok : .serviceUnavailable, body, headers: reason == nil ? [:] : [.retryAfter: "1"])
    }

    private func models(_ context: SomaRequestContext) async throws -> Response {
        let states = await runtime.service.registry.states()
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
        let before = await runtime.service.registry.state(of: module)
        if load {
            do { try await runtime.service.registry.load(module) } catch {
                throw APIError(.internal, "the model could not be loaded")
            }
        } else {
            _ = await runtime.service.unload(module)
        }
        let after = await runtime.service.registry.state(of: module)
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
        var body = WarmBody()
        var large = context
        large.bodyLimit = configuration.maxBodyBytes * 16
        let raw = try await JSONIO.collect(request, context: large)
        if raw.readableBytes > 0 {
            // An empty body warms nothing but profiles of no one: allowed without a content type.
            guard let type = request.headers[.contentType], JSONIO.isJSON(type) else {
                throw APIError(.unsupportedMediaType, "the body must be JSON (Content-Type: application/json)")
            }
            body = try JSONIO.decode(WarmBody.self, from: raw.readableBytesView)
        }
        let modules = try Validation.modules(body.modules, field: "modules")
        if let users = body.users, !(0...10_000).contains(users) {
            throw APIError(.validationFailed, "users must be from 0 to 10000", field: "users")
        }
        let given = body.texts ?? []
        var report = try await runtime.warm(texts: given, modules: modules, users: body.users ?? 0, deadline: configuration.maxDeadline)
        report.skipped += given.count { !$0.contains(where: { !$0.isWhitespace }) }
        return reply(.ok, context) { w in
            w.key("texts"); w.number(report.texts)
            w.key("entries"); w.number(report.entries)
            w.key("skipped"); w.number(report.skipped)
            w.key("users"); w.number(report.users)
        }
    }

    private func reply(_ status: HTTPResponse.Status, _ context: SomaRequestContext, _ members: (inout JSONWriter) -> Void) -> Response {
        JSONIO.response(
            status,
            JSONIO.object { w in
                w.key("request_id"); w.string(context.requestID)
                members(&w)
            })
    }
}
