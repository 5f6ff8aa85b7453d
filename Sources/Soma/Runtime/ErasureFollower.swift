public import Logging
public import ServiceLifecycle

/// Purges this instance's own cache layers (L1, the fallback, the per-user index) and its outbox
/// of users erased through any instance, from the store's erasure log. Only with a store several instances share
/// (PostgreSQL): the instance that erases purges its own layers and Redis at once; every other
/// instance follows within `interval`.
///
/// Notices are read in id order. Ids come from a sequence, and two erasures committing at once can
/// become visible out of order, so each poll looks back `lookback` ids behind the highest one seen
/// and skips those already applied (a purge is idempotent; the skip only saves the work).
public struct ErasureFollower: Service {
    let store: any Store
    let outbox: Outbox?
    let cache: TieredCache
    let logger: Logger
    var interval: Duration = .seconds(2)
    var lookback: Int64 = 256

    public init(store: any Store, outbox: Outbox?, cache: TieredCache, logger: Logger, interval: Duration = .seconds(2)) {
        self.store = store
        self.outbox = outbox
        self.cache = cache
        self.logger = logger
        self.interval = interval
    }

    /// Where a follower is in the log.
    struct Cursor {
        var highest: Int64 = 0
        var applied: Set<Int64> = []
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            var cursor = Cursor()
            while !Task.isCancelled {
                _ = await poll(&cursor)
                do { try await Task.sleep(for: interval) } catch { return }
            }
        }
    }

    /// Applies the notices not applied yet; returns how many. A store that cannot answer is tried
    /// again on the next poll.
    @discardableResult
    func poll(_ cursor: inout Cursor) async -> Int {
        var count = 0
        while true {
            let notices: [ErasureNotice]
            do {
                notices = try await store.erasures(after: max(0, cursor.highest - lookback), limit: 1000)
            } catch {
                logger.debug("erasure log not readable; retrying", metadata: ["soma.error": .string("\(error)")])
                return count
            }
            let fresh = notices.filter { !cursor.applied.contains($0.id) }
            for notice in fresh {
                await cache.purgeLocal(notice.user)
                // Writes this instance queued for the user must not be replayed after the erasure.
                if let dropped = try? outbox?.deleteUser(tagged: notice.user), dropped > 0 {
                    logger.info("dropped queued entries of an erased user", metadata: ["soma.entries": "\(dropped)"])
                }
                cursor.applied.insert(notice.id)
                count += 1
            }
            cursor.highest = max(cursor.highest, notices.last?.id ?? 0)
            cursor.applied = cursor.applied.filter { $0 > cursor.highest - lookback }
            // A full page may have more behind it; a page of nothing new means caught up.
            if notices.count < 1000 || fresh.isEmpty { return count }
        }
    }
}
