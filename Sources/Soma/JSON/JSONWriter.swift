/// A minimal streaming JSON writer into a byte buffer: objects with keys in the order written,
/// arrays, strings (escaped per RFC 8259), numbers, booleans and null.
///
/// Foundation's `JSONEncoder` costs about as much as an analysis on Linux; the results types write
/// themselves through this instead (`AnalysisResults.json()`), with keys sorted as
/// `JSONEncoder`'s `.sortedKeys` would.
public struct JSONWriter {
    public private(set) var bytes: [UInt8] = []
    private var needsComma: [Bool] = []

    public init(capacity: Int = 1024) { bytes.reserveCapacity(capacity) }

    private mutating func separator() {
        if let last = needsComma.last {
            if last { bytes.append(UInt8(ascii: ",")) }
            needsComma[needsComma.count - 1] = true
        }
    }

    public mutating func beginObject() {
        valueSeparator()
        bytes.append(UInt8(ascii: "{"))
        needsComma.append(false)
    }

    public mutating func endObject() {
        needsComma.removeLast()
        bytes.append(UInt8(ascii: "}"))
    }

    public mutating func beginArray() {
        valueSeparator()
        bytes.append(UInt8(ascii: "["))
        needsComma.append(false)
    }

    public mutating func endArray() {
        needsComma.removeLast()
        bytes.append(UInt8(ascii: "]"))
    }

    /// Writes `"name":`; the value written next belongs to it.
    public mutating func key(_ name: String) {
        separator()
        writeString(name)
        bytes.append(UInt8(ascii: ":"))
        pendingValueAfterKey = true
    }

    private var pendingValueAfterKey = false

    private mutating func valueSeparator() {
        if pendingValueAfterKey {
            pendingValueAfterKey = false
        } else {
            separator()
        }
    }

    public mutating func string(_ s: String) {
        valueSeparator()
        writeString(s)
    }

    public mutating func number(_ x: Double) {
        valueSeparator()
        if x.isFinite {
            if x == x.rounded(), abs(x) < 1e15 {
                bytes.append(contentsOf: String(Int64(x)).utf8)
            } else {
                bytes.append(contentsOf: x.description.utf8)
            }
        } else {
            bytes.append(contentsOf: "null".utf8)
        }
    }

    public mutating func number(_ x: Int) {
        valueSeparator()
        bytes.append(contentsOf: String(x).utf8)
    }

    public mutating func bool(_ b: Bool) {
        valueSeparator()
        bytes.append(contentsOf: (b ? "true" : "false").utf8)
    }

    public mutating func null() {
        valueSeparator()
        bytes.append(contentsOf: "null".utf8)
    }

    public mutating func raw(_ json: [UInt8]) {
        valueSeparator()
        bytes.append(contentsOf: json)
    }

    /// Splices the members of another JSON object (its bytes without the braces) into the object
    /// being written.
    public mutating func rawMembers(_ members: some Collection<UInt8>) {
        guard !members.isEmpty else { return }
        separator()
        bytes.append(contentsOf: members)
    }

    /// Runs of bytes that need no escape are copied whole (per-byte appends were the writer's cost).
    private mutating func writeString(_ s: String) {
        bytes.append(UInt8(ascii: "\""))
        var s = s
        s.withUTF8 { utf8 in
            var run = 0
            for k in 0..<utf8.count {
                let b = utf8[k]
                guard b < 0x20 || b == UInt8(ascii: "\"") || b == UInt8(ascii: "\\") else { continue }
                if run < k { bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[run..<k])) }
                escape(b)
                run = k + 1
            }
            if run < utf8.count { bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[run...])) }
        }
        bytes.append(UInt8(ascii: "\""))
    }

    private mutating func escape(_ b: UInt8) {
        bytes.append(0x5C)
        switch b {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"): bytes.append(b)
        case 0x0A: bytes.append(UInt8(ascii: "n"))
        case 0x0D: bytes.append(UInt8(ascii: "r"))
        case 0x09: bytes.append(UInt8(ascii: "t"))
        case 0x08: bytes.append(UInt8(ascii: "b"))
        case 0x0C: bytes.append(UInt8(ascii: "f"))
        default:
            let hex = Array("0123456789abcdef".utf8)
            bytes.append(contentsOf: [UInt8(ascii: "u"), 0x30, 0x30, hex[Int(b >> 4)], hex[Int(b & 0xF)]])
        }
    }
}
