/// The PostgreSQL client's pool: see `ConnectionPool`.
typealias PostgresPool = ConnectionPool<PostgresConnection>
