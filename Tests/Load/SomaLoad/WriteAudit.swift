import Foundation
import Synchronization

/// One entry write the harness sent and how it ended: what the write audit checks the database
/// against after a fault (docs/RELIABILITY.md).
public struct WriteRecord: Sendable, Codable, Equatable {
    public var user: String
    /// The write's Idempotency-Key: one logical write, however often it was sent.
    public var key: String
    /// The entry's id, from an acknowledgement.
    public var entryID: String?
    /// The HTTP status; `nil` when no answer came (a timeout, a failed connection).
    public var status: Int?
    /// `Soma-Instance` of the answer: which instance acknowledged it.
    public var instance: String?
    /// When it was sent and answered, microseconds on the harness's monotonic clock.
    public var sentMicros: Int64
    public var answeredMicros: Int64?

    public init(
        user: String, key: String, entryID: String? = nil, status: Int? = nil, instance: String? = nil, sentMicros: Int64,
        answeredMicros: Int64? = nil
    ) {
        self.user = user
        self.key = key
        self.entryID = entryID
        self.status = status
        self.instance = instance
        self.sentMicros = sentMicros
        self.answeredMicros = answeredMicros
    }

    /// 201 stored or 202 queued (200 is not an answer of this route): the service promised to keep it.
    public var acknowledged: Bool { (status == 201 || status == 202) && entryID != nil }

    enum CodingKeys: String, CodingKey {
        case user, key, status, instance
        case entryID = "entry_id"
        case sentMicros = "sent_us"
        case answeredMicros = "answered_us"
    }
}

/// The entry writes of a run, recorded as their answers arrive; written out as JSON Lines.
public final class WriteLedger: Sendable {
    private let records = Mutex<[WriteRecord]>([])
    private let origin = ContinuousClock.now

    public init() {}

    /// Microseconds since the ledger was made, on the monotonic clock.
    public func now() -> Int64 {
        let elapsed = ContinuousClock.now - origin
        return elapsed.components.seconds * 1_000_000 + elapsed.components.attoseconds / 1_000_000_000_000
    }

    public func record(_ record: WriteRecord) {
        records.withLock { $0.append(record) }
    }

    public var all: [WriteRecord] { records.withLock { $0 } }

    /// One JSON object per line.
    public func write(to path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        var data = Data()
        for record in all {
            data.append(try encoder.encode(record))
            data.append(0x0A)
        }
        try data.write(to: URL(fileURLWithPath: path))
    }

    public static func read(path: String) throws -> [WriteRecord] {
        let decoder = JSONDecoder()
        return try String(decoding: Data(contentsOf: URL(fileURLWithPath: path)), as: UTF8.self)
            .split(separator: "\n").map { try decoder.decode(WriteRecord.self, from: Data($0.utf8)) }
    }
}

/// A stored entry as the database holds it: its user and the order it was received in.
public struct ReceivedEntry: Sendable, Equatable {
    public var id: String
    public var user: String
    /// The database's arrival counter (PostgreSQL `entries.received`).
    public var received: Int64

    public init(id: String, user: String, received: Int64) {
        self.id = id
        self.user = user
        self.received = received
    }

    /// Rows of `id<TAB>user<TAB>received`, as `psql -At -F $'\t'` prints them.
    public static func parse(tsv: String) throws -> [ReceivedEntry] {
        try tsv.split(separator: "\n").map { line in
            let fields = line.split(separator: "\t", omittingEmptySubsequences: false)
            guard fields.count == 3, let received = Int64(fields[2]) else {
                throw WriteAudit.Malformed(line: String(line))
            }
            return ReceivedEntry(id: String(fields[0]), user: String(fields[1]), received: received)
        }
    }
}

/// What the database holds against what the service acknowledged:
/// - every acknowledged entry is stored (`missing`);
/// - each logical write (user, Idempotency-Key) is stored at most once: a user's stored entries
///   never outnumber the distinct writes the harness sent for them (`duplicated`);
/// - the order: of two writes of one user acknowledged by one instance, when the first was
///   acknowledged before the second was sent, the database received the first first
///   (`reordered`). That is the service's promise (docs/ARCHITECTURE.md §4): per instance, because
///   each instance's outbox replays on its own; writes in flight together have no order to keep.
public struct WriteAudit: Sendable, Equatable, Encodable {
    public struct Malformed: Error, CustomStringConvertible {
        public var line: String
        public var description: String { "not a row of id, user and received: \(line)" }
    }

    /// Distinct acknowledged entries (201 or 202).
    public var acknowledged = 0
    /// Of those, acknowledged as queued (202).
    public var queued = 0
    /// Writes sent that got no acknowledgement (an error, a timeout, no answer).
    public var unacknowledged = 0
    /// Acknowledged entries the database does not hold.
    public var missing = 0
    /// Stored entries beyond the distinct writes sent, summed over users.
    public var duplicated = 0
    /// Ordered pairs (see the type) the database received the other way round.
    public var reordered = 0
    /// Ordered pairs checked.
    public var orderedPairs = 0
    /// Stored entries of writes that were never acknowledged (sent, then the answer was lost):
    /// allowed, reported.
    public var storedUnacknowledged = 0

    public var passed: Bool { missing == 0 && duplicated == 0 && reordered == 0 }

    enum CodingKeys: String, CodingKey {
        case acknowledged, queued, unacknowledged, missing, duplicated, reordered, passed
        case orderedPairs = "ordered_pairs"
        case storedUnacknowledged = "stored_unacknowledged"
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(acknowledged, forKey: .acknowledged)
        try c.encode(queued, forKey: .queued)
        try c.encode(unacknowledged, forKey: .unacknowledged)
        try c.encode(missing, forKey: .missing)
        try c.encode(duplicated, forKey: .duplicated)
        try c.encode(reordered, forKey: .reordered)
        try c.encode(orderedPairs, forKey: .orderedPairs)
        try c.encode(storedUnacknowledged, forKey: .storedUnacknowledged)
        try c.encode(passed, forKey: .passed)
    }

    public init(writes: [WriteRecord], received: [ReceivedEntry]) {
        let users = Set(writes.map(\.user))
        let stored = received.filter { users.contains($0.user) }
        let position = Dictionary(stored.map { ($0.id, $0.received) }, uniquingKeysWith: min)

        // The first acknowledgement of each entry (a retried request may be answered twice).
        var firstAck: [String: WriteRecord] = [:]
        for write in writes where write.acknowledged {
            guard let id = write.entryID else { continue }
            if let seen = firstAck[id], (seen.answeredMicros ?? .max) <= (write.answeredMicros ?? .max) { continue }
            firstAck[id] = write
        }
        let acknowledgedKeys = Set(firstAck.values.map { [$0.user, $0.key] })
        acknowledged = firstAck.count
        queued = firstAck.values.filter { $0.status == 202 }.count
        unacknowledged = Set(writes.map { [$0.user, $0.key] }).subtracting(acknowledgedKeys).count
        missing = firstAck.keys.filter { position[$0] == nil }.count
        storedUnacknowledged = stored.filter { firstAck[$0.id] == nil }.count

        var keysPerUser: [String: Set<String>] = [:]
        for write in writes { keysPerUser[write.user, default: []].insert(write.key) }
        var rowsPerUser: [String: Int] = [:]
        for row in stored { rowsPerUser[row.user, default: 0] += 1 }
        duplicated = rowsPerUser.reduce(0) { $0 + max(0, $1.value - (keysPerUser[$1.key]?.count ?? 0)) }

        var groups: [[String]: [WriteRecord]] = [:]
        for write in firstAck.values { groups[[write.user, write.instance ?? ""], default: []].append(write) }
        for group in groups.values {
            for first in group {
                guard let acknowledgedAt = first.answeredMicros, let firstPosition = position[first.entryID ?? ""] else { continue }
                for second in group where second.sentMicros > acknowledgedAt {
                    guard let secondPosition = position[second.entryID ?? ""] else { continue }
                    orderedPairs += 1
                    if secondPosition < firstPosition { reordered += 1 }
                }
            }
        }
    }
}
