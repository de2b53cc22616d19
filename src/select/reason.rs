//! Why a read went where it went: the reasons the pick path gives, each a counter.

/// Why a read went where it went. The order is the index of its counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Reason {
    Weighted = 0,
    Transaction = 1,
    Pinned = 2,
    UsePrimary = 3,
    ReadYourWrites = 4,
    InstanceHint = 5,
    LagFallback = 6,
    DownFallback = 7,
    /// A read run again on another node after its node failed under it.
    Retried = 8,
    /// Under a test runner without `TEST_REPLICA_READS`: every read goes to the primary.
    TestPrimary = 9,
    /// Every replica is over a lag limit: a read that needs no fresh data served by a
    /// least-lagged replica under `LAG_CEILING_SECONDS` (the herd policy).
    LagTolerated = 10,
}

pub const REASON_COUNT: usize = 11;

pub const REASON_NAMES: [&str; REASON_COUNT] = [
    "weighted",
    "transaction",
    "pinned",
    "use_primary",
    "read_your_writes",
    "instance_hint",
    "lag_fallback",
    "down_fallback",
    "retried",
    "test_primary",
    "lag_tolerated",
];
