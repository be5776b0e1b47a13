//! The upstream pool's decisions ([`UpstreamPool`], [`Carriers`]), driven from outside the
//! core: these tests need a base instant, and the core reads no clock, not even in its own
//! unit tests.

use std::time::{Duration, Instant};

use proxy_core::upstreams::{Carriers, PoolKey, PoolLimits, PoolStats, UpstreamPool};
use proxy_core::ServerAddr;

fn key(host: &str) -> PoolKey {
    PoolKey { server: ServerAddr::new(host, 80), tls: false, proxy: None, name: None }
}

fn pool(per_key: usize, all: usize, idle_secs: u64) -> UpstreamPool<&'static str, u32> {
    UpstreamPool::new(PoolLimits { max_idle_per_key: per_key, max_idle: all, idle_timeout: Duration::from_secs(idle_secs) })
}

#[test]
fn the_connection_parked_last_goes_first_and_only_to_its_destination() {
    let t0 = Instant::now();
    let mut pool = pool(8, 8, 10);
    assert!(pool.park(key("a"), "a1", 1, t0).is_empty());
    assert!(pool.park(key("a"), "a2", 2, t0 + Duration::from_secs(1)).is_empty());
    assert!(pool.park(key("b"), "b1", 3, t0).is_empty());
    let mut expired = Vec::new();
    assert_eq!(pool.take(&key("a"), t0 + Duration::from_secs(2), &mut expired), Some(("a2", 2)));
    assert_eq!(pool.take(&key("a"), t0 + Duration::from_secs(2), &mut expired), Some(("a1", 1)));
    assert_eq!(pool.take(&key("a"), t0 + Duration::from_secs(2), &mut expired), None);
    assert_eq!(pool.take(&key("c"), t0, &mut expired), None);
    assert!(expired.is_empty());
    assert_eq!((pool.len(), pool.idle_for(&key("b"))), (1, 1));
    let tls = PoolKey { tls: true, ..key("b") };
    assert_eq!(pool.take(&tls, t0, &mut expired), None, "TLS and plain are different destinations");
    assert_eq!(pool.stats, PoolStats { parked: 3, reused: 2, missed: 3, expired: 0, evicted: 0 });
}

#[test]
fn idle_connections_expire() {
    let t0 = Instant::now();
    let mut pool = pool(8, 8, 4);
    pool.park(key("a"), "old", 1, t0);
    pool.park(key("a"), "new", 2, t0 + Duration::from_secs(3));
    pool.park(key("b"), "b", 3, t0 + Duration::from_secs(1));
    assert_eq!(pool.poll_timeout(), Some(t0 + Duration::from_secs(4)));
    assert_eq!(pool.expire(t0 + Duration::from_secs(4)), [("old", 1)]);
    assert_eq!(pool.poll_timeout(), Some(t0 + Duration::from_secs(5)));
    // An expired connection is never handed out: it is returned for closing.
    let mut expired = Vec::new();
    assert_eq!(pool.take(&key("b"), t0 + Duration::from_secs(6), &mut expired), None);
    assert_eq!(expired, [("b", 3)]);
    assert_eq!(pool.expire(t0 + Duration::from_secs(7)), [("new", 2)]);
    assert!(pool.is_empty() && pool.poll_timeout().is_none());
    assert_eq!(pool.stats.expired, 3);
}

#[test]
fn limits_close_the_oldest() {
    let t0 = Instant::now();
    let at = |s| t0 + Duration::from_secs(s);
    let mut limited = pool(2, 3, 60);
    assert!(limited.park(key("a"), "a1", 1, at(0)).is_empty());
    assert!(limited.park(key("a"), "a2", 2, at(1)).is_empty());
    assert_eq!(limited.park(key("a"), "a3", 3, at(2)), [("a1", 1)], "two per destination");
    assert!(limited.park(key("b"), "b1", 4, at(3)).is_empty());
    assert_eq!(limited.park(key("c"), "c1", 5, at(4)), [("a2", 2)], "three in all: the oldest goes");
    assert_eq!(limited.len(), 3);
    assert_eq!(limited.stats.evicted, 2);
    let mut none = pool(0, 3, 60);
    assert_eq!(none.park(key("a"), "a", 1, t0), [("a", 1)], "no idle connections kept at all");
}

#[test]
fn a_stream_joins_the_oldest_carrier_with_room_of_its_own_thread() {
    let mut carriers: Carriers<&str> = Carriers::default();
    assert!(carriers.join(&key("a"), None).is_none(), "none yet");
    let first = carriers.add(key("a"), "first", 2, Some(0));
    let second = carriers.add(key("a"), "second", 2, Some(1));
    carriers.add(key("b"), "other", 100, Some(0));
    // Thread 1 takes its own; thread 0 its own; without a thread, the oldest.
    assert_eq!(carriers.join(&key("a"), Some(1)), Some((second, "second")));
    assert_eq!(carriers.join(&key("a"), Some(0)), Some((first, "first")));
    assert_eq!(carriers.join(&key("a"), None), Some((first, "first")));
    // Thread 0's is full: not thread 1's, a connection of its own.
    assert!(carriers.join(&key("a"), Some(0)).is_none(), "full");
    assert_eq!(carriers.join(&key("a"), Some(1)), Some((second, "second")));
    assert_eq!(carriers.streams(), 4);
    carriers.leave(first);
    assert_eq!(carriers.join(&key("a"), Some(0)), Some((first, "first")), "a stream left: room again");
    // A carrier that says it takes none (closing) gets no stream; one that is gone is forgotten.
    carriers.set_capacity(second, 0);
    carriers.leave(second);
    assert!(carriers.join(&key("a"), Some(1)).is_none());
    carriers.remove(second);
    assert!(carriers.join(&key("a"), None).is_none());
    assert_eq!(carriers.len(), 2);
}

#[test]
fn a_connection_becomes_a_carrier_only_where_none_of_its_thread_has_room() {
    let mut carriers: Carriers<&str> = Carriers::default();
    assert!(carriers.wanted(&key("a"), Some(0)), "none yet");
    let first = carriers.add(key("a"), "first", 1, Some(0));
    assert!(!carriers.wanted(&key("a"), Some(0)), "room on thread 0's");
    assert!(carriers.wanted(&key("a"), Some(1)), "thread 1 has none");
    assert!(carriers.wanted(&key("b"), Some(0)), "none to b");
    assert!(!carriers.wanted(&key("a"), None), "where threads share everything, any will do");
    carriers.join(&key("a"), Some(0));
    assert!(carriers.wanted(&key("a"), Some(0)), "thread 0's is full");
    carriers.leave(first);
    assert!(!carriers.wanted(&key("a"), Some(0)));
    carriers.set_capacity(first, 0);
    assert!(carriers.wanted(&key("a"), Some(0)), "closing: takes no more");
}
