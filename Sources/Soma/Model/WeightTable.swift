/// A model's weights: one row per pattern, one column per dimension of its module, stored
/// contiguously in FP32 or FP16. Reads always widen to `Float`, so arithmetic accumulates in
/// single precision whatever the storage (a `Float16` running sum stalls at small magnitudes).
public struct WeightTable: Sendable, Equatable {
    public enum Precision: String, Sendable, Codable, CaseIterable {
        case fp32, fp16

        public var bytesPerWeight: Int { self == .fp32 ? 4 : 2 }
    }

    enum Storage: Sendable, Equatable {
        case fp32([Float])
        case fp16([Float16])
    }

    public let dimensions: Int
    public let count: Int
    let storage: Storage

    public init(dimensions: Int, rows: [[Float]]) {
        self.dimensions = dimensions
        count = rows.count
        var flat: [Float] = []
        flat.reserveCapacity(rows.count * dimensions)
        for row in rows {
            precondition(row.count == dimensions, "row has \(row.count) weights, expected \(dimensions)")
            flat.append(contentsOf: row)
        }
        storage = .fp32(flat)
    }

    init(dimensions: Int, count: Int, storage: Storage) {
        self.dimensions = dimensions
        self.count = count
        self.storage = storage
    }

    public var precision: Precision {
        switch storage {
        case .fp32: .fp32
        case .fp16: .fp16
        }
    }

    /// Bytes the weights occupy in memory (and in a compiled model file).
    public var byteCount: Int { count * dimensions * precision.bytesPerWeight }

    @inline(__always)
    public subscript(row: Int, dimension: Int) -> Float {
        let k = row &* dimensions &+ dimension
        switch storage {
        case .fp32(let w): return w[k]
        case .fp16(let w): return Float(w[k])
        }
    }

    public func row(_ row: Int) -> [Float] {
        (0..<dimensions).map { self[row, $0] }
    }

    /// The same weights in another precision (FP32 → FP16 rounds to nearest).
    public func converted(to precision: Precision) -> WeightTable {
        guard precision != self.precision else { return self }
        switch storage {
        case .fp32(let w): return WeightTable(dimensions: dimensions, count: count, storage: .fp16(w.map { Float16($0) }))
        case .fp16(let w): return WeightTable(dimensions: dimensions, count: count, storage: .fp32(w.map { Float($0) }))
        }
    }

    /// Only the given rows, in the given order.
    public func selecting(_ rows: [Int]) -> WeightTable {
        switch storage {
        case .fp32(let w):
            var out: [Float] = []
            out.reserveCapacity(rows.count * dimensions)
            for r in rows { out.append(contentsOf: w[(r * dimensions)..<((r + 1) * dimensions)]) }
            return WeightTable(dimensions: dimensions, count: rows.count, storage: .fp32(out))
        case .fp16(let w):
            var out: [Float16] = []
            out.reserveCapacity(rows.count * dimensions)
            for r in rows { out.append(contentsOf: w[(r * dimensions)..<((r + 1) * dimensions)]) }
            return WeightTable(dimensions: dimensions, count: rows.count, storage: .fp16(out))
        }
    }
}
