import Foundation
import Soma

/// The engine over the committed models, loaded once for the whole test run.
enum Fixtures {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let models = root.appendingPathComponent("Fixtures/models")
    static let eval = root.appendingPathComponent("Fixtures/eval")
    static let modelSet: ModelSet = {
        do { return try ModelSet.load(from: models) } catch { fatalError("models do not load: \(error)") }
    }()
    static let engine = Engine(models: modelSet)
}

extension Document {
    var words: [String] { tokens.map(\.lower) }
    var sentenceTexts: [String] { sentences.map { trimmedText(of: $0) } }
}
