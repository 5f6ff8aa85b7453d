/// Keeps module models in memory while they are used: loads each one lazily on first use and
/// unloads it again after it has been idle for `idleTimeout`.
///
/// Loading a model is slow (file I/O), so concurrent first uses of a module share one load: the
/// first caller starts it, later callers wait for the same result. A failed load is handed to
/// every caller waiting at that moment and is not cached; the next use tries again. A model is
/// never unloaded while someone uses it or waits for it.
///
/// ```swift
/// let registry = ModelRegistry(loader: { try ModelSource.load($0, from: directory) })
/// let count = try await registry.withModel(.emotion) { $0.patterns.count }
/// ```
///
/// Time comes from the injected clock, so tests can move it by hand. `runIdleSweeper(interval:)`
/// does the periodic unloading; run it for as long as the registry lives.
public actor ModelRegistry {
    /// What happened to a model, for logs and metrics.
    public enum Event: Sendable, Equatable {
        /// The loader returned a model after `duration` (measured on the registry's clock).
        case loaded(Module, duration: Duration)
        /// The model was dropped from memory (idle sweep or admin action).
        case unloaded(Module)
        /// The loader threw; the text is the error's description.
        case loadFailed(Module, String)
    }

    /// One module's entry as admin routes and metrics see it.
    public struct ModelState: Sendable, Equatable {
        public var module: Module
        /// Whether the model is in memory.
        public var loaded: Bool
        /// Whether a load is in flight.
        public var loading: Bool
        /// Callers that hold the model or wait for it to load.
        public var inUse: Int
        /// Estimated memory of the loaded model (from `sizeOf`), 0 when not loaded.
        public var bytes: Int
        /// Loader calls, including failed ones.
        public var loads: Int
        /// Loader calls that threw.
        public var loadFailures: Int
        /// Times the model was dropped from memory.
        public var unloads: Int
        /// Last use as time since the registry was created, nil if never used or loaded.
        public var lastUse: Duration?

        public init(
            module: Module,
            loaded: Bool = false,
            loading: Bool = false,
            inUse: Int = 0,
            bytes: Int = 0,
            loads: Int = 0,
            loadFailures: Int = 0,
            unloads: Int = 0,
            lastUse: Duration? = nil
        ) {
            self.module = module
            self.loaded = loaded
            self.loading = loading
            self.inUse = inUse
            self.bytes = bytes
            self.loads = loads
            self.loadFailures = loadFailures
            self.unloads = unloads
            self.lastUse = lastUse
        }
    }

    private struct Entry {
        var model: ModuleModel?
        var bytes = 0
        var inFlight: Task<ModuleModel, any Error>?
        var inUse = 0
        var lastUse: Duration?
        var loads = 0
        var loadFailures = 0
        var unloads = 0
    }

    private let loader: @Sendable (Module) async throws -> ModuleModel
    private let sizeOf: @Sendable (ModuleModel) -> Int
    private let onEvent: (@Sendable (Event) -> Void)?
    private let clock: any Clock<Duration>
    /// Time since the registry was created, on `clock`.
    private let elapsed: @Sendable () -> Duration
    public nonisolated let idleTimeout: Duration
    private var entries: [Module: Entry] = [:]

    /// - Parameters:
    ///   - loader: Loads one module's model; called at most once at a time per module.
    ///   - idleTimeout: How long a model must go unused before `sweep()` unloads it.
    ///   - clock: The time source for last use, idle checks and the sweeper's sleeps.
    ///   - sizeOf: Estimates a model's memory for `ModelState.bytes`.
    ///   - onEvent: Called on the registry's executor for every load, failed load and unload; keep
    ///     it cheap and do not call back into the registry synchronously.
    public init(
        loader: @escaping @Sendable (Module) async throws -> ModuleModel,
        idleTimeout: Duration = .seconds(600),
        clock: any Clock<Duration> = ContinuousClock(),
        sizeOf: @escaping @Sendable (ModuleModel) -> Int = { _ in 0 },
        onEvent: (@Sendable (Event) -> Void)? = nil
    ) {
        self.loader = loader
        self.idleTimeout = idleTimeout
        self.clock = clock
        self.sizeOf = sizeOf
        self.onEvent = onEvent
        elapsed = Timeline(clock: clock).now
    }

    // MARK: Use

    /// Runs `body` with `module`'s model, loading it first if needed.
    ///
    /// The model counts as in use (and cannot be unloaded) from the call until `body` returns or
    /// throws. The last-use time is recorded at both ends.
    public func withModel<R: Sendable>(
        _ module: Module,
        _ body: @Sendable (ModuleModel) async throws -> R
    ) async throws -> R {
        let model = try await acquire(module)
        defer { release(module) }
        return try await body(model)
    }

    /// Returns `module`'s model, loading it if needed, and marks it in use until `release(_:)`.
    ///
    /// Prefer `withModel(_:_:)`; every successful `acquire` must be paired with one `release`, or
    /// the model is never unloaded. When it throws, nothing needs releasing.
    public func acquire(_ module: Module) async throws -> ModuleModel {
        // Counted before the load so that neither a sweep nor `unload` drops the model between
        // the load finishing and this caller resuming.
        entries[module, default: Entry()].inUse += 1
        touch(module)
        do {
            let model = try await loadedModel(module)
            touch(module)
            return model
        } catch {
            release(module)
            throw error
        }
    }

    /// Ends one `acquire(_:)`.
    public func release(_ module: Module) {
        guard let inUse = entries[module]?.inUse, inUse > 0 else { return }
        entries[module]?.inUse = inUse - 1
        touch(module)
    }

    /// Loads `module`'s model if it is not in memory yet (preload), without marking it in use.
    public func load(_ module: Module) async throws {
        _ = try await loadedModel(module)
    }

    private func touch(_ module: Module) {
        entries[module, default: Entry()].lastUse = elapsed()
    }

    /// The loaded model, or the result of the load in flight, or of a new one.
    private func loadedModel(_ module: Module) async throws -> ModuleModel {
        if let model = entries[module]?.model { return model }
        if let inFlight = entries[module]?.inFlight { return try await inFlight.value }
        // An unstructured task because the load belongs to every caller that waits for it, not to
        // the first one: cancelling one caller must not fail the others.
        let task = Task { try await self.runLoad(module) }
        entries[module, default: Entry()].inFlight = task
        return try await task.value
    }

    private func runLoad(_ module: Module) async throws -> ModuleModel {
        entries[module, default: Entry()].loads += 1
        let start = elapsed()
        do {
            let model = try await loader(module)
            let duration = elapsed() - start
            entries[module, default: Entry()].model = model
            entries[module]?.bytes = sizeOf(model)
            entries[module]?.inFlight = nil
            touch(module)
            onEvent?(.loaded(module, duration: duration))
            return model
        } catch {
            entries[module, default: Entry()].inFlight = nil
            entries[module]?.loadFailures += 1
            onEvent?(.loadFailed(module, String(describing: error)))
            throw error
        }
    }

    // MARK: Unload

    /// Unloads every model that nobody uses and that was last used at least `idleTimeout` ago.
    ///
    /// - Returns: The modules unloaded, in `Module.allCases` order.
    @discardableResult
    public func sweep() -> [Module] {
        let now = elapsed()
        var unloaded: [Module] = []
        for module in Module.allCases {
            guard let entry = entries[module], entry.model != nil, entry.inUse == 0 else { continue }
            if let lastUse = entry.lastUse, now - lastUse < idleTimeout { continue }
            drop(module)
            unloaded.append(module)
        }
        return unloaded
    }

    /// Unloads `module`'s model now (admin action).
    ///
    /// - Returns: false when the model is not loaded or is in use; it is then left alone.
    @discardableResult
    public func unload(_ module: Module) -> Bool {
        guard let entry = entries[module], entry.model != nil, entry.inUse == 0 else { return false }
        drop(module)
        return true
    }

    private func drop(_ module: Module) {
        entries[module]?.model = nil
        entries[module]?.bytes = 0
        entries[module]?.unloads += 1
        onEvent?(.unloaded(module))
    }

    /// Sleeps `interval` on the registry's clock, then sweeps, until the calling task is cancelled.
    public func runIdleSweeper(interval: Duration) async {
        while !Task.isCancelled {
            do {
                try await clock.sleep(for: interval)
            } catch {
                return
            }
            sweep()
        }
    }

    // MARK: State

    /// Every module's state, in `Module.allCases` order.
    public func states() -> [ModelState] {
        Module.allCases.map { module in
            let entry = entries[module] ?? Entry()
            return ModelState(
                module: module,
                loaded: entry.model != nil,
                loading: entry.inFlight != nil,
                inUse: entry.inUse,
                bytes: entry.bytes,
                loads: entry.loads,
                loadFailures: entry.loadFailures,
                unloads: entry.unloads,
                lastUse: entry.lastUse
            )
        }
    }

    /// One module's state.
    public func state(of module: Module) -> ModelState {
        states().first { $0.module == module } ?? ModelState(module: module)
    }
}
