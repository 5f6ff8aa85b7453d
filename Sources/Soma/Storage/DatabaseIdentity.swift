/// Which database a store writes to, as the database itself says: PostgreSQL's system identifier
/// (fixed when the cluster was created by initdb; a new cluster, even at the same address, has
/// another) and the database's name. The outbox stamps its queued entries with it and never
/// replays them into a database with another identity (docs/ARCHITECTURE.md §4).
public struct DatabaseIdentity: Sendable, Hashable, CustomStringConvertible {
    /// `pg_control_system().system_identifier`, or `nil` where the role may not read it (a
    /// managed service that revoked the function: grant `EXECUTE ON FUNCTION pg_control_system()`
    /// to the service's role, or only the name is compared).
    public var systemIdentifier: String?
    public var name: String

    public init(systemIdentifier: String?, name: String) {
        self.systemIdentifier = systemIdentifier
        self.name = name
    }

    /// `<system identifier>/<name>`, `?` for an unreadable identifier: how outbox rows are stamped.
    public var description: String { "\(systemIdentifier ?? "?")/\(name)" }
}
