import Foundation
import Soma
import Synchronization

/// Streams JSON Lines through the engine. Every input line yields exactly one output line: the
/// results, or an error object naming what was wrong with that line; the run always continues.
struct JSONLinesRunner {
    let engine: Engine
    let modules: Set<Module>
    /// Longest accepted line, in bytes.
    var maxLineBytes = 1 << 20

    /// Lines analysed together, in parallel, before their results are written in input order.
    var chunkLines = 512

    func run(input: FileHandle, output: FileHandle) throws {
        var pending = Data()
        var chunk: [Data] = []
        var firstLine = 1
        // One buffer for every chunk's output, kept at its size: a fresh one per chunk (half a
        // megabyte) came from mmap each time and cost more in page faults than its copy.
        var buffer: [UInt8] = []
        func flush() {
            guard !chunk.isEmpty else { return }
            let results = processInParallel(chunk, firstLine: firstLine)
            buffer.removeAll(keepingCapacity: true)
            for r in results {
                buffer.append(contentsOf: r)
                buffer.append(0x0A)
            }
            // Mutable only because `Data(bytesNoCopy:)` takes a mutable pointer: the Data lives
            // for the write alone and is never changed (no deallocator: the buffer stays ours).
            buffer.withUnsafeMutableBytes { bytes in
                output.write(Data(bytesNoCopy: bytes.baseAddress!, count: bytes.count, deallocator: .none))
            }
            firstLine += chunk.count
            chunk.removeAll(keepingCapacity: true)
        }
        // Lines are found with memchr over the bytes read, not by walking a `Data` slice: that
        // loop runs on one thread while the others wait, and its per-byte accesses to a captured
        // variable (each an exclusivity check) were 3 % of the whole run's CPU.
        while true {
            let read = input.readData(ofLength: 1 << 16)
            if read.isEmpty { break }
            pending.append(read)
            let consumed = pending.withUnsafeBytes { raw -> Int in
                guard let base = raw.baseAddress else { return 0 }
                var start = 0
                while start < raw.count, let hit = memchr(base + start, 0x0A, raw.count - start) {
                    let newline = base.distance(to: UnsafeRawPointer(hit))
                    var end = newline
                    if end > start && raw[end - 1] == 0x0D { end -= 1 }
                    chunk.append(Data(bytes: base + start, count: end - start))
                    start = newline + 1
                }
                return start
            }
            pending.removeSubrange(pending.startIndex..<(pending.startIndex + consumed))
            // (A chunk is flushed once it is full: at most one read's lines over `chunkLines`.)
            while chunk.count >= chunkLines {
                let rest = Array(chunk[chunkLines...])
                chunk.removeSubrange(chunkLines...)
                flush()
                chunk = rest
            }
        }
        if !pending.isEmpty {
            if pending.last == 0x0D { pending.removeLast() }
            chunk.append(pending)
        }
        flush()
    }

    /// One output line per input line, computed on every core, returned in input order.
    func processInParallel(_ lines: [Data], firstLine: Int) -> [[UInt8]] {
        let out = ResultSlots(count: lines.count)
        DispatchQueue.concurrentPerform(iterations: lines.count) { i in
            out.set(i, process(lines[i], lineNumber: firstLine + i))
        }
        return out.values
    }

    func process(_ line: Data, lineNumber: Int) -> [UInt8] {
        guard line.count <= maxLineBytes else {
            return failure(id: nil, code: "payload_too_large", message: "line \(lineNumber) is longer than \(maxLineBytes) bytes")
        }
        // Most lines are {"id": …, "text": "…"}: read (validating the text's UTF-8) and answer
        // those without Foundation.
        if let simple = line.withUnsafeBytes({ TextLine.parse($0.bindMemory(to: UInt8.self)) }) {
            return simple.output(engine.analyze(simple.text, modules: modules))
        }
        do {
            _ = try TextInput.decode(line)
        } catch {
            return failure(id: nil, code: "invalid_utf8", message: "line \(lineNumber): \(error)")
        }
        let parsed: Any
        do { parsed = try JSONSerialization.jsonObject(with: line, options: [.fragmentsAllowed]) } catch {
            return failure(id: nil, code: "invalid_json", message: "line \(lineNumber) is not valid JSON")
        }
        guard var object = parsed as? [String: Any] else {
            return failure(id: nil, code: "validation_failed", message: "line \(lineNumber): expected a JSON object with a \"text\" field")
        }
        let id = object["id"]
        guard let text = object["text"] as? String else {
            return failure(id: id, code: "validation_failed", message: "line \(lineNumber): field \"text\" must be a string")
        }
        object.removeValue(forKey: "text")
        object.removeValue(forKey: "results")
        object.removeValue(forKey: "error")
        if object["id"] == nil { object["id"] = NSNull() }
        return splice(object, key: "results", json: engine.analyze(text, modules: modules).json())
    }

    func failure(id: Any?, code: String, message: String) -> [UInt8] {
        let error: [String: Any] = ["code": code, "message": message]
        let object: [String: Any] = ["id": id ?? NSNull(), "error": error]
        return Array(
            (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]))
                ?? Data(#"{"error":{"code":"internal","message":"unencodable"},"id":null}"#.utf8))
    }

    /// `object` serialised with `"key": json` appended, without re-parsing `json`.
    func splice(_ object: [String: Any], key: String, json: [UInt8]) -> [UInt8] {
        guard JSONSerialization.isValidJSONObject(object),
            var head = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
        else {
            return failure(id: nil, code: "validation_failed", message: "echoed fields are not serialisable")
        }
        head.removeLast()  // "}"
        if head.count > 1 { head.append(UInt8(ascii: ",")) }
        head.append(contentsOf: Array("\"\(key)\":".utf8))
        head.append(contentsOf: json)
        head.append(UInt8(ascii: "}"))
        return Array(head)
    }
}

/// Slots written concurrently, each exactly once, by index.
final class ResultSlots: Sendable {
    private let slots: Mutex<[[UInt8]]>
    init(count: Int) { slots = Mutex([[UInt8]](repeating: [], count: count)) }
    func set(_ i: Int, _ value: [UInt8]) { slots.withLock { $0[i] = value } }
    var values: [[UInt8]] { slots.withLock { $0 } }
}
