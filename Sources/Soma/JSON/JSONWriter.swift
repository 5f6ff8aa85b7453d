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

    private mutating func writeString(_ s: String) {
        bytes.append(UInt8(ascii: "\""))
        for b in s.utf8 {
            switch b {
            case UInt8(ascii: "\""): bytes.append(contentsOf: [0x5C, 0x22])
            case UInt8(ascii: "\\"): bytes.append(contentsOf: [0x5C, 0x5C])
            case 0x0A: bytes.append(contentsOf: [0x5C, UInt8(ascii: "n")])
            case 0x0D: bytes.append(contentsOf: [0x5C, UInt8(ascii: "r")])
            case 0x09: bytes.append(contentsOf: [0x5C, UInt8(ascii: "t")])
            case 0x08: bytes.append(contentsOf: [0x5C, UInt8(ascii: "b")])
            case 0x0C: bytes.append(contentsOf: [0x5C, UInt8(ascii: "f")])
            case 0..<0x20:
                let hex: [UInt8] = Array("0123456789abcdef".utf8)
                bytes.append(contentsOf: [0x5C, UInt8(ascii: "u"), 0x30, 0x30, hex[Int(b >> 4)], hex[Int(b & 0xF)]])
            default: bytes.append(b)
            }
        }
        bytes.append(UInt8(ascii: "\""))
    }
}
