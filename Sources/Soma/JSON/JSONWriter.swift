/// A minimal streaming JSON writer into a byte buffer: objects with keys in the order written,
/// arrays, strings (escaped per RFC 8259), numbers, booleans and null.
///
/// Foundation's `JSONEncoder` costs about as much as an analysis on Linux; the results types write
/// themselves through this instead (`AnalysisResults.json()`), with keys sorted as
/// `JSONEncoder`'s `.sortedKeys` would.
///
/// The bytes go into memory the writer owns (it is `~Copyable`, so no copy can share it): an
/// append is a bounds check and a store. Over an `[UInt8]` every append also asked the runtime
/// whether the array was uniquely referenced, and writing JSON was a third of a short text's cost.
public struct JSONWriter: ~Copyable {
    private var base: UnsafeMutablePointer<UInt8>
    private var capacity: Int
    /// Bytes written so far.
    public private(set) var count = 0
    /// Whether each open container already has a member (a comma goes before the next one), as
    /// bits: bit d for the container at depth d. No array to grow or check for uniqueness on every
    /// value (the per-container `[Bool]` stack was 3 % of a short text's analysis); containers
    /// nested deeper than 64 levels keep theirs in `deeper`.
    private var hasMember: UInt64 = 0
    private var depth = 0
    private var deeper: [Bool] = []
    private var pendingValueAfterKey = false

    public init(capacity: Int = 1024) {
        self.capacity = max(capacity, 16)
        base = .allocate(capacity: self.capacity)
    }

    deinit { base.deallocate() }

    /// The bytes written so far (a copy).
    public var bytes: [UInt8] { Array(UnsafeBufferPointer(start: base, count: count)) }

    // MARK: - Appending

    @inline(__always)
    private mutating func put(_ byte: UInt8) {
        if count == capacity { grow(to: count + 1) }
        base[count] = byte
        count += 1
    }

    private mutating func put(_ buffer: UnsafeBufferPointer<UInt8>) {
        guard let source = buffer.baseAddress, !buffer.isEmpty else { return }
        if count + buffer.count > capacity { grow(to: count + buffer.count) }
        (base + count).initialize(from: source, count: buffer.count)
        count += buffer.count
    }

    private mutating func put(_ bytes: some Collection<UInt8>) {
        let done: Void? = bytes.withContiguousStorageIfAvailable { put($0) }
        if done == nil { for b in bytes { put(b) } }
    }

    private mutating func put(_ text: StaticString) {
        text.withUTF8Buffer { put($0) }
    }

    private mutating func grow(to needed: Int) {
        var newCapacity = capacity * 2
        while newCapacity < needed { newCapacity *= 2 }
        let grown = UnsafeMutablePointer<UInt8>.allocate(capacity: newCapacity)
        grown.initialize(from: base, count: count)
        base.deallocate()
        base = grown
        capacity = newCapacity
    }

    // MARK: - Structure

    private mutating func separator() {
        guard depth > 0 else { return }
        let d = depth - 1
        if d < 64 {
            let bit: UInt64 = 1 << UInt64(d)
            if hasMember & bit != 0 { put(UInt8(ascii: ",")) } else { hasMember |= bit }
        } else {
            if deeper[d - 64] { put(UInt8(ascii: ",")) } else { deeper[d - 64] = true }
        }
    }

    private mutating func open(_ bracket: UInt8) {
        valueSeparator()
        put(bracket)
        if depth < 64 { hasMember &= ~(1 << UInt64(depth)) } else { deeper.append(false) }
        depth += 1
    }

    private mutating func close(_ bracket: UInt8) {
        precondition(depth > 0, "JSONWriter: a container closed that was never opened")
        depth -= 1
        if depth >= 64 { deeper.removeLast() }
        put(bracket)
    }

    public mutating func beginObject() { open(UInt8(ascii: "{")) }
    public mutating func endObject() { close(UInt8(ascii: "}")) }
    public mutating func beginArray() { open(UInt8(ascii: "[")) }
    public mutating func endArray() { close(UInt8(ascii: "]")) }

    /// Writes `"name":`; the value written next belongs to it.
    public mutating func key(_ name: String) {
        separator()
        writeString(name)
        put(UInt8(ascii: ":"))
        pendingValueAfterKey = true
    }

    /// `key(_:)` for a name written in the source: copied as it is, without the escape scan.
    /// Only for names that need no escaping (checked in debug builds).
    public mutating func field(_ name: StaticString) {
        separator()
        // One capacity check for the quotes, the name and the colon, and the name's few bytes
        // copied in a loop: a `memcpy` call and a check per piece cost about 150 instructions a
        // field (scripts/engine-profile.py), and a result has dozens of fields.
        name.withUTF8Buffer { utf8 in
            assert(!utf8.contains { $0 < 0x20 || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") }, "\(name) needs escaping")
            let needed = count + utf8.count + 3
            if needed > capacity { grow(to: needed) }
            let out = base + count
            out[0] = UInt8(ascii: "\"")
            for k in 0..<utf8.count { out[1 + k] = utf8[k] }
            out[1 + utf8.count] = UInt8(ascii: "\"")
            out[2 + utf8.count] = UInt8(ascii: ":")
            count = needed
        }
        pendingValueAfterKey = true
    }

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
                writeInteger(Int64(x))
            } else if !writeFourDecimals(x) {
                var text = x.description
                text.withUTF8 { put($0) }
            }
        } else {
            put("null" as StaticString)
        }
    }

    public mutating func number(_ x: Int) {
        valueSeparator()
        writeInteger(Int64(x))
    }

    /// A number with at most four decimals (every score the analysers round, `rounded(_:)`),
    /// written as `description` writes it without making a String: true if `x` is one.
    ///
    /// `x` has at most four decimals when `n / 10_000` rounds to `x` for `n = x × 10_000` rounded;
    /// the decimal "n / 10⁴" then reads back as `x` (both are `n / 10⁴` correctly rounded), and no
    /// shorter decimal can, since below 10⁹ the spacing of doubles is far under 10⁻⁴.
    /// `description` writes such numbers without an exponent (from 10⁻⁴ up to 2⁵³). Tested
    /// against `description`.
    private mutating func writeFourDecimals(_ x: Double) -> Bool {
        guard abs(x) >= 1e-4, abs(x) < 1e9 else { return false }
        let scaled = (x * 10_000).rounded()
        guard scaled / 10_000 == x else { return false }
        var n = Int64(scaled)
        if n < 0 {
            put(UInt8(ascii: "-"))
            n = -n
        }
        writeInteger(n / 10_000)
        var fraction = n % 10_000
        put(UInt8(ascii: "."))
        var digits = 4
        while fraction % 10 == 0 {
            fraction /= 10
            digits -= 1
        }
        var divisor: Int64 = 1
        for _ in 1..<digits { divisor *= 10 }
        while divisor > 0 {
            put(UInt8(ascii: "0") + UInt8(fraction / divisor % 10))
            divisor /= 10
        }
        return true
    }

    /// Decimal digits straight into the buffer (no String made for them).
    private mutating func writeInteger(_ value: Int64) {
        guard value != 0 else { return put(UInt8(ascii: "0")) }
        if value < 0 { put(UInt8(ascii: "-")) }
        var magnitude = value.magnitude
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 20) { digits in
            var start = 20
            while magnitude > 0 {
                start -= 1
                digits[start] = UInt8(ascii: "0") + UInt8(magnitude % 10)
                magnitude /= 10
            }
            put(UnsafeBufferPointer(rebasing: digits[start..<20]))
        }
    }

    public mutating func bool(_ b: Bool) {
        valueSeparator()
        if b { put("true" as StaticString) } else { put("false" as StaticString) }
    }

    public mutating func null() {
        valueSeparator()
        put("null" as StaticString)
    }

    public mutating func raw(_ json: [UInt8]) {
        valueSeparator()
        put(json)
    }

    /// Splices the members of another JSON object (its bytes without the braces) into the object
    /// being written.
    public mutating func rawMembers(_ members: some Collection<UInt8>) {
        guard !members.isEmpty else { return }
        separator()
        put(members)
    }

    /// A string with nothing to escape (nearly every one) is copied as it is scanned, after one
    /// capacity check, from the String's own storage; one that needs an escape starts again on the
    /// escaping path. (A scan, then a `memcpy` per run and a check per piece, cost about 330
    /// instructions a string: scripts/engine-profile.py.)
    private mutating func writeString(_ s: String) {
        let plain: Bool? = s.utf8.withContiguousStorageIfAvailable { utf8 in
            let needed = count + utf8.count + 2
            if needed > capacity { grow(to: needed) }
            let out = base + count
            out[0] = UInt8(ascii: "\"")
            for k in 0..<utf8.count {
                let b = utf8[k]
                if b < 0x20 || b == UInt8(ascii: "\"") || b == UInt8(ascii: "\\") { return false }
                out[1 + k] = b
            }
            out[1 + utf8.count] = UInt8(ascii: "\"")
            count = needed
            return true
        }
        if plain != true { writeEscaped(s) }
    }

    /// Runs of bytes that need no escape are copied whole (per-byte appends were the writer's cost).
    private mutating func writeEscaped(_ s: String) {
        put(UInt8(ascii: "\""))
        var s = s
        s.withUTF8 { utf8 in
            var run = 0
            for k in 0..<utf8.count {
                let b = utf8[k]
                guard b < 0x20 || b == UInt8(ascii: "\"") || b == UInt8(ascii: "\\") else { continue }
                if run < k { put(UnsafeBufferPointer(rebasing: utf8[run..<k])) }
                escape(b)
                run = k + 1
            }
            if run < utf8.count { put(UnsafeBufferPointer(rebasing: utf8[run...])) }
        }
        put(UInt8(ascii: "\""))
    }

    private mutating func escape(_ b: UInt8) {
        put(0x5C)
        switch b {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"): put(b)
        case 0x0A: put(UInt8(ascii: "n"))
        case 0x0D: put(UInt8(ascii: "r"))
        case 0x09: put(UInt8(ascii: "t"))
        case 0x08: put(UInt8(ascii: "b"))
        case 0x0C: put(UInt8(ascii: "f"))
        default:
            let hex: StaticString = "0123456789abcdef"
            put("u00" as StaticString)
            hex.withUTF8Buffer { digits in
                put(digits[Int(b >> 4)])
                put(digits[Int(b & 0xF)])
            }
        }
    }
}
