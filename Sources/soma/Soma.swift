import ArgumentParser

@main
struct SomaCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "soma",
        abstract: "Cognitive text analysis: emotion, reasoning, values, theory of mind and narrative.",
        subcommands: [Analyze.self, Optimize.self, BenchBatching.self]
    )
}
