import Foundation
import Testing

private func chunked(_ path: String, _ chunks: [[UInt8]]) -> [UInt8] {
    Array("POST \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".utf8)
        + chunks.flatMap { $0 }
}

/// Chunked bodies past the cap or with broken chunk sizes are the client's fault: 413 or 400 with
/// the JSON error, never a 500 that burns the error budget. Against the real `soma serve` binary,
/// over raw loopback sockets.
@Suite("HTTP: body framing", .serialized, .timeLimit(.minutes(2))) struct FramingTests {
    @Test(arguments: ["/v1/analyze", "/v1/entries"])
    func aChunkedBodyPastTheCapIs413(path: String) async throws {
        let soma = try await SomaProcess.start(instance: "framing", environment: [:])
        let port = soma.port
        do {
            let body = Array(#"{"text":""#.utf8) + [UInt8](repeating: UInt8(ascii: "a"), count: 300_000) + Array(#""}"#.utf8)
            var chunks: [[UInt8]] = stride(from: 0, to: body.count, by: 8192).map { start in
                let piece = body[start..<min(start + 8192, body.count)]
                return Array(String(piece.count, radix: 16).utf8) + Array("\r\n".utf8) + piece + Array("\r\n".utf8)
            }
            chunks.append(Array("0\r\n\r\n".utf8))
            let answer = try await RawSocket.exchange(port: port, chunked(path, chunks))
            #expect(answer.status.hasPrefix("HTTP/1.1 413"))
            #expect(answer.body.contains(#""code":"payload_too_large""#))
        }
        #expect(!soma.logText.contains("unhandled error"))
        #expect(await soma.stop() == 0, "a clean exit on SIGTERM: no malformed connection holds shutdown")
    }

    @Test(arguments: ["zz", "-1c", "ffffffffffffffffffffff"])
    func aBrokenChunkSizeIs400(size: String) async throws {
        let soma = try await SomaProcess.start(instance: "framing", environment: [:])
        let answer = try await RawSocket.exchange(port: soma.port, chunked("/v1/analyze", [Array("\(size)\r\n{\"text\":\"hi\"}\r\n0\r\n\r\n".utf8)]))
        #expect(answer.status.hasPrefix("HTTP/1.1 400"))
        #expect(answer.body.contains(#""code":"invalid_request""#))
        #expect(!soma.logText.contains("unhandled error"))
        #expect(await soma.stop() == 0, "a clean exit on SIGTERM: no malformed connection holds shutdown")
    }
}
