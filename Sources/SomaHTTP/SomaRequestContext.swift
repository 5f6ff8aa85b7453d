public import Hummingbird
public import Soma

/// The request context of every Soma route: Hummingbird's core context plus the request id, the
/// body cap and, once the identity middleware has run on `/v1`, the caller.
public struct SomaRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    /// `X-Request-Id` as received (when well-formed) or generated; echoed on every response.
    public var requestID: String = ""
    /// Set by the identity middleware on `/v1` routes; `CallerContext` makes it non-optional.
    public var caller: Caller?
    /// The configured body cap (`SOMA_MAX_BODY_BYTES`), set by the outer middleware.
    public var bodyLimit = 256 * 1024

    public init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
    }

    /// Hummingbird's body cap for `request.decode(as:context:)` and body collection.
    public var maxUploadSize: Int { bodyLimit }
    /// JSON bodies with the contract's errors (415, 413, 400, 422).
    public var requestDecoder: ContractJSONDecoder { ContractJSONDecoder() }
}

/// The context of `/v1` routes: the caller is established, so handlers never unwrap it. Made from
/// the parent context after the identity middleware ran (Hummingbird's child context).
public struct CallerContext: ChildRequestContext {
    public var coreContext: CoreRequestContextStorage
    public var requestID: String
    public let caller: Caller
    let bodyLimit: Int

    public init(context: SomaRequestContext) throws {
        guard let caller = context.caller else {
            // Only reachable if a route were registered without the identity middleware.
            throw APIError(.unauthorized, "the caller is not identified")
        }
        self.coreContext = context.coreContext
        self.requestID = context.requestID
        self.caller = caller
        self.bodyLimit = context.bodyLimit
    }

    public var maxUploadSize: Int { bodyLimit }
    public var requestDecoder: ContractJSONDecoder { ContractJSONDecoder() }
}
