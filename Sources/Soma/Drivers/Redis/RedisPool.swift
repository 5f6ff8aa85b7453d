/// The Redis client's pool: see `ConnectionPool`.
typealias RedisPool = ConnectionPool<RedisConnection>
