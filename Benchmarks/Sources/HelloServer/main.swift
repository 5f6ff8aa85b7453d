import Hummingbird

// The baseline next to which the service's HTTP numbers are read: Hummingbird answering a fixed
// string, with the same listen backlog as `soma serve`. Port from the first argument (default 8799).
let port = CommandLine.arguments.dropFirst().first.flatMap(Int.init) ?? 8799
let router = Router()
router.get("/") { _, _ in "Hello, world!" }
let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: port), backlog: 4096))
try await app.runService()
