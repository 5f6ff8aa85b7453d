import Foundation
import NIOHTTP1
import Testing

/// Clients that hold connections without finishing a request: headers that never end, bodies a
/// byte at a time, idle keep-alive, HTTP/1.0 without keep-alive, more stalled sockets than the
/// instance has descriptors for. Against the real `soma serve` binary with a 256-descriptor limit
/// and short timeouts, over raw loopback sockets (docs/ARCHITECTURE.md §7).
@Suite("HTTP: slow and stalled clients", .serialized, .timeLimit(.minutes(2))) struct SlowClientTests {
    /// Short timeouts so the suite runs in seconds; the cap is left to its default, derived from
    /// the descriptor limit (256 − 64 reserved = 192).
    static let environment = [
        "SOMA_HEADER_TIMEOUT_MS": "1000",
        "SOMA_BODY_TIMEOUT_MS": "1500",
        "SOMA_IDLE_TIMEOUT_MS": "3000",
    ]

    static func start() async throws -> SomaProcess {
        try await SomaProcess.start(instance: "slow-clients", environment: environment, openFiles: 256)
    }

    @Test func healthAnswersWhileStalledConnectionsOutnumberTheCapAndTheTimeoutsCloseThem() async throws {
        let soma = try await Self.start()
        let port = soma.port
        // 300 sockets that never finish their headers: more than the cap (192) and than the
        // instance's 256 descriptors.
        let stalled = try await RawSocket.offPool {
            try (0..<300).map { _ in
                let socket = try RawSocket(port: port)
                socket.send("GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: ")
                return UncheckedBox(socket)
            }
        }
        // A new client is answered within a second all the same.
        let health = try await RawSocket.offPool {
            let socket = try RawSocket(port: port)
            socket.send("GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            return socket.readResponse(timeout: .seconds(1)).status
        }
        #expect(health.hasPrefix("HTTP/1.1 200"), "a new /health was not answered within 1 s: \(health)")

        // Every stalled socket is closed by the server: evicted at the cap or cut by the header
        // timeout (1 s), well before the test gives up on it.
        let stillOpen = try await RawSocket.offPool {
            stalled.filter { !$0.value.readUntilClosed(timeout: .seconds(6)).closed }.count
        }
        #expect(stillOpen == 0, "\(stillOpen) stalled connections were never closed by the server")
        let headerTimeouts = try await soma.metric(#"soma_connections_closed_total{reason="header_timeout"}"#) ?? 0
        let evicted = try await soma.metric(#"soma_connections_closed_total{reason="evicted"}"#) ?? 0
        #expect(headerTimeouts > 0, "the header timeout closed none of them")
        #expect(evicted > 0, "the cap evicted none of them")
        #expect(headerTimeouts + evicted >= 300)
        #expect(try await soma.request("GET", "/health").status == .ok)
        #expect(await soma.stop() == 0)
    }

    @Test func aBodySentAByteAtATimeIsCutOffWith408NotA500() async throws {
        let soma = try await Self.start()
        let port = soma.port
        let (closed, sentAll) = try await RawSocket.offPool {
            let socket = try RawSocket(port: port)
            socket.send("POST /v1/analyze HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 30\r\n\r\n")
            // 30 bytes at one per 200 ms would take 6 s; the body timeout is 1.5 s.
            var sentAll = true
            for byte in Array(#"{"text":"a slow body arrives"}"#.utf8) {
                Thread.sleep(forTimeInterval: 0.2)
                if !socket.send([byte]) {
                    sentAll = false
                    break
                }
            }
            return (socket.readUntilClosed(timeout: .seconds(5)).closed, sentAll)
        }
        #expect(!sentAll, "the whole slow body was accepted")
        #expect(closed)
        #expect(try await soma.metric(#"soma_connections_closed_total{reason="body_timeout"}"#) == 1)
        #expect(try await soma.metric(#"soma_http_requests_total{route="/v1/analyze",method="POST",status="408"}"#) == 1)
        #expect(!soma.logText.contains("status=500"))
        #expect(await soma.stop() == 0)
    }

    @Test func anIdleKeptAliveConnectionStaysOpenForTheIdleTimeoutThenCloses() async throws {
        let soma = try await Self.start()
        let port = soma.port
        let (early, late) = try await RawSocket.offPool {
            let socket = try RawSocket(port: port)
            socket.send("GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            _ = socket.readResponse(timeout: .seconds(2))
            // Past the header timeout (1 s) but inside the idle timeout (3 s): still open.
            let early = socket.readUntilClosed(timeout: .milliseconds(1800)).closed
            let late = socket.readUntilClosed(timeout: .seconds(4)).closed
            return (early, late)
        }
        #expect(!early, "a kept-alive connection was closed before its idle timeout")
        #expect(late, "an idle connection stayed open past its idle timeout")
        // At least this one (the test client's pooled connection may have idled out too).
        #expect(try await soma.metric(#"soma_connections_closed_total{reason="idle_timeout"}"#) ?? 0 >= 1)
        #expect(await soma.stop() == 0)
    }

    @Test func aConnectionThatSendsNothingIsClosedByTheHeaderTimeout() async throws {
        let soma = try await Self.start()
        let port = soma.port
        let closed = try await RawSocket.offPool { try RawSocket(port: port).readUntilClosed(timeout: .seconds(4)).closed }
        #expect(closed)
        #expect(try await soma.metric(#"soma_connections_closed_total{reason="header_timeout"}"#) == 1)
        #expect(await soma.stop() == 0)
    }

    @Test func http10WithoutKeepAliveIsClosedAfterItsResponseAndWithKeepAliveIsNot() async throws {
        let soma = try await Self.start()
        let port = soma.port
        let (plain, plainClosed, kept, keptClosed) = try await RawSocket.offPool {
            let plain = try RawSocket(port: port)
            plain.send("GET /health HTTP/1.0\r\n\r\n")
            let (bytes, plainClosed) = plain.readUntilClosed(timeout: .milliseconds(800))
            let kept = try RawSocket(port: port)
            kept.send("GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            let head = kept.readResponse(timeout: .seconds(2)).head
            return (String(decoding: bytes, as: UTF8.self), plainClosed, head, kept.readUntilClosed(timeout: .milliseconds(500)).closed)
        }
        #expect(plain.contains(" 200 "))
        #expect(plain.lowercased().contains("connection: close"))
        #expect(plainClosed, "an HTTP/1.0 connection without keep-alive stayed open after its response")
        #expect(kept.contains(" 200 "))
        #expect(!keptClosed, "an HTTP/1.0 keep-alive connection was closed after one response")
        #expect(await soma.stop() == 0)
    }
}

/// Sockets cross from the Dispatch thread that opened them to the one that reads them; each is
/// used by one thread at a time.
struct UncheckedBox<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}
