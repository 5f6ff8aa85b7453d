import ArgumentParser

@main
struct SomaCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "soma",
        abstract: "Cognitive text analysis: emotion, reasoning, values, theory of mind and narrative.",
        subcommands: [Serve.self, Migrate.self, WarmCache.self, ConfigCommand.self, Analyze.self, Optimize.self, Autoscale.self]
    )

    /// The service's version string (`/health`).
    static let version = "0.4.0"
}
