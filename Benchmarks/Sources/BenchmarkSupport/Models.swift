public import Foundation
public import Soma

/// The model sets the benchmarks compare, loaded once.
public enum Models {
    public static let root = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// FP32, unpruned: the source form.
    public static let fp32: ModelSet = {
        do { return try ModelSet.loadSources(from: root.appendingPathComponent("Fixtures/models")) } catch {
            fatalError("cannot load model sources: \(error)")
        }
    }()

    /// FP16, unpruned.
    public static let fp16 = fp32.converted(to: .fp16)

    /// The served default (FP16 + pruning), compiled by `make models` into .build/models.
    public static let served: ModelSet = {
        let dir = root.appendingPathComponent(".build/models")
        do { return try ModelSet.loadCompiled(from: dir) } catch {
            fatalError("run `make models` first (\(dir.path)): \(error)")
        }
    }()

    /// The served models widened back to FP32: pruned, FP32.
    public static let prunedFP32 = served.converted(to: .fp32)
}
