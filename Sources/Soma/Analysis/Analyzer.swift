/// One of the five analyses: a pure function of a document and the module's model.
///
/// Analysers are value types, deterministic and free of shared mutable state, so one instance
/// serves every request on every thread.
public protocol Analyzer: Sendable {
    associatedtype Output: Codable & Sendable & Equatable
    static var module: Module { get }
    var model: ModuleModel { get }
    init(model: ModuleModel)
    func analyze(_ doc: Document) -> Output
}

/// Rounds a score for output so results are stable and compact (4 decimals).
@inline(__always)
func rounded(_ x: Float) -> Double {
    (Double(x) * 10_000).rounded() / 10_000
}

@inline(__always)
func clamp(_ x: Float, _ lo: Float, _ hi: Float) -> Float { min(hi, max(lo, x)) }
