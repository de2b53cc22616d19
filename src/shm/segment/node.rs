//! One node's block of the segment: what `status()` reports (`NodeStatus`), what the
//! pick path needs (`SnapNode`) and the leader's counters, in `NODE_WORDS` words.

use std::time::Instant;

use crate::health::{Health, State};
use crate::node_status::NodeStatus;
use crate::probe::{Fault, FaultKind, Sample};
use crate::select::SnapNode;

use super::super::clock;
use super::{Counters, NODE_WORDS};

const STATUS_BYTES: usize = 32;
pub(super) const ERROR_BYTES: usize = 256;
const NONE: u64 = u64::MAX;

// Offsets inside a node block.
const N_FLAGS: usize = 0;
const N_WEIGHT: usize = 1;
const N_FRESH: usize = 2;
const N_VISIBLE: usize = 3;
const N_STATE: usize = 4;
const N_STREAKS: usize = 5;
const N_UNDER: usize = 6;
const N_LAST_GOOD: usize = 7;
const N_LAST_CHANGE: usize = 8;
const N_LAST_PROBE: usize = 9;
const N_LATENCY: usize = 10;
const N_LAG_BYTES: usize = 11;
const N_LAG_SECS: usize = 12;
const N_TIMELINE: usize = 13;
const N_CURRENT: usize = 14;
const N_RECEIVE: usize = 15;
const N_REPLAY: usize = 16;
pub(super) const N_PROBES: usize = 17;
const N_FAILED: usize = 18;
const N_PASSIVE: usize = 19;
const N_ERR_KIND: usize = 20;
const N_DOWN_EPOCH: usize = 21;
const N_INTR_EPOCH: usize = 22;
const N_APPLIED: usize = 23;
const N_STATUS_LEN: usize = 24;
const N_STATUS: usize = 25;
const N_ERR_LEN: usize = N_STATUS + STATUS_BYTES / 8;
const N_ERR: usize = N_ERR_LEN + 1;
/// After the error text: the server's start time (`Sample::started_us`).
const N_STARTED: usize = N_ERR + ERROR_BYTES / 8;
const _: () = assert!(N_STARTED < NODE_WORDS);

const F_ELIGIBLE: u64 = 1;
const F_LIVE: u64 = 2;
const F_LAGGING: u64 = 4;
const F_MISMATCH: u64 = 8;
const F_SAMPLE: u64 = 16;
const F_RECOVERY: u64 = 32;
const F_PAUSED: u64 = 64;
const F_ERROR: u64 = 128;
const F_RECEIVER: u64 = 256;
const F_TOLERATED: u64 = 512;
const F_PROXY: u64 = 1024;

const STATES: [State; 5] = [
    State::Unknown,
    State::Up,
    State::Down,
    State::Lagging,
    State::Misconfigured,
];

fn put_text(block: &mut [u64], len_at: usize, at: usize, cap: usize, text: &str) {
    let mut end = text.len().min(cap);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let bytes = &text.as_bytes()[..end];
    block[len_at] = end as u64;
    for (i, chunk) in bytes.chunks(8).enumerate() {
        let mut w = [0u8; 8];
        w[..chunk.len()].copy_from_slice(chunk);
        block[at + i] = u64::from_le_bytes(w);
    }
}

fn get_text(block: &[u64], len_at: usize, at: usize, cap: usize) -> String {
    let len = (block[len_at] as usize).min(cap);
    let bytes: Vec<u8> = block[at..at + cap / 8]
        .iter()
        .flat_map(|w| w.to_le_bytes())
        .take(len)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn opt(v: Option<u64>) -> u64 {
    v.unwrap_or(NONE)
}

fn unopt(v: u64) -> Option<u64> {
    (v != NONE).then_some(v)
}

fn ns_of(t: Option<Instant>) -> u64 {
    t.map_or(0, clock::to_ns)
}

fn instant_of(ns: u64) -> Option<Instant> {
    (ns != 0).then(|| clock::from_ns(ns))
}

pub(super) fn encode_node(n: &NodeStatus, s: &SnapNode, c: Counters, block: &mut [u64]) {
    let sample = n.sample.as_ref();
    let bit = |b: bool, f: u64| if b { f } else { 0 };
    block[N_FLAGS] = bit(s.eligible, F_ELIGIBLE)
        | bit(s.live, F_LIVE)
        | bit(s.lagging, F_LAGGING)
        | bit(s.tolerated, F_TOLERATED)
        | bit(n.role_mismatch, F_MISMATCH)
        | bit(n.proxy, F_PROXY)
        | bit(sample.is_some(), F_SAMPLE)
        | bit(sample.is_some_and(|s| s.in_recovery), F_RECOVERY)
        | bit(sample.is_some_and(|s| s.replay_paused), F_PAUSED)
        | bit(n.last_error.is_some(), F_ERROR)
        | bit(
            sample.is_some_and(|s| s.receiver_status.is_some()),
            F_RECEIVER,
        );
    block[N_WEIGHT] = s.weight.to_bits();
    block[N_FRESH] = clock::to_ns(s.fresh_until);
    block[N_VISIBLE] = s.visible_lsn;
    block[N_STATE] = STATES
        .iter()
        .position(|&x| x == n.health.state)
        .unwrap_or(0) as u64;
    block[N_STREAKS] = u64::from(n.health.ok_streak) | (u64::from(n.health.fail_streak) << 32);
    block[N_UNDER] = u64::from(n.health.under_limit_streak);
    block[N_LAST_GOOD] = ns_of(n.health.last_good);
    block[N_LAST_CHANGE] = ns_of(Some(n.health.last_change));
    block[N_LAST_PROBE] = ns_of(n.last_probe);
    block[N_LATENCY] = opt(n
        .latency
        .map(|l| l.as_nanos().min(u128::from(NONE - 1)) as u64));
    block[N_LAG_BYTES] = opt(n.lag_bytes);
    block[N_LAG_SECS] = n.lag_seconds.unwrap_or(f64::NAN).to_bits();
    block[N_TIMELINE] = opt(sample.and_then(|s| s.timeline).map(u64::from));
    block[N_CURRENT] = opt(sample.and_then(|s| s.current_lsn));
    block[N_RECEIVE] = opt(sample.and_then(|s| s.receive_lsn));
    block[N_REPLAY] = opt(sample.and_then(|s| s.replay_lsn));
    block[N_PROBES] = n.probes;
    block[N_FAILED] = n.failed_probes;
    block[N_PASSIVE] = n.passive_faults;
    block[N_ERR_KIND] = n.last_error.as_ref().map_or(0, |f| f.kind.code());
    block[N_DOWN_EPOCH] = c.down_epoch;
    block[N_INTR_EPOCH] = c.interrupt_epoch;
    block[N_APPLIED] = c.applied;
    block[N_STARTED] = opt(sample.and_then(|s| s.started_us));
    let status = sample.and_then(|s| s.receiver_status.as_deref());
    put_text(
        block,
        N_STATUS_LEN,
        N_STATUS,
        STATUS_BYTES,
        status.unwrap_or(""),
    );
    let error = n.last_error.as_ref().map_or("", |f| f.message.as_str());
    put_text(block, N_ERR_LEN, N_ERR, ERROR_BYTES, error);
}

pub(super) fn decode_node(
    b: &[u64],
    fall: u32,
    rise: u32,
) -> Result<(NodeStatus, SnapNode, Counters), String> {
    let flags = b[N_FLAGS];
    let has = |f: u64| flags & f != 0;
    let state = *STATES
        .get(b[N_STATE] as usize)
        .ok_or_else(|| format!("bad state code {}", b[N_STATE]))?;
    let last_change = instant_of(b[N_LAST_CHANGE]).ok_or("no last state change")?;
    let mut health = Health::new(fall, rise, last_change);
    health.state = state;
    health.ok_streak = b[N_STREAKS] as u32;
    health.fail_streak = (b[N_STREAKS] >> 32) as u32;
    health.under_limit_streak = b[N_UNDER] as u32;
    health.last_good = instant_of(b[N_LAST_GOOD]);
    let sample = has(F_SAMPLE).then(|| Sample {
        in_recovery: has(F_RECOVERY),
        current_lsn: unopt(b[N_CURRENT]),
        receive_lsn: unopt(b[N_RECEIVE]),
        replay_lsn: unopt(b[N_REPLAY]),
        replay_paused: has(F_PAUSED),
        receiver_status: has(F_RECEIVER).then(|| get_text(b, N_STATUS_LEN, N_STATUS, STATUS_BYTES)),
        timeline: unopt(b[N_TIMELINE]).and_then(|t| u32::try_from(t).ok()),
        started_us: unopt(b[N_STARTED]),
        // Not shared: the prober decides what they mean (`NodeStatus::proxy`).
        server_addr: None,
        server_port: None,
    });
    let last_error = if has(F_ERROR) {
        let kind = FaultKind::from_code(b[N_ERR_KIND])
            .ok_or_else(|| format!("bad fault code {}", b[N_ERR_KIND]))?;
        Some(Fault {
            kind,
            message: get_text(b, N_ERR_LEN, N_ERR, ERROR_BYTES),
        })
    } else {
        None
    };
    let lag_seconds = f64::from_bits(b[N_LAG_SECS]);
    let weight = f64::from_bits(b[N_WEIGHT]);
    if !weight.is_finite() || weight < 0.0 {
        return Err(format!("bad weight {weight}"));
    }
    let status = NodeStatus {
        health,
        sample,
        last_probe: instant_of(b[N_LAST_PROBE]),
        latency: unopt(b[N_LATENCY]).map(std::time::Duration::from_nanos),
        last_error,
        lag_bytes: unopt(b[N_LAG_BYTES]),
        lag_seconds: (!lag_seconds.is_nan()).then_some(lag_seconds),
        lag_exact: false,
        role_mismatch: has(F_MISMATCH),
        proxy: has(F_PROXY),
        probes: b[N_PROBES],
        failed_probes: b[N_FAILED],
        passive_faults: b[N_PASSIVE],
    };
    let snap = SnapNode {
        weight,
        eligible: has(F_ELIGIBLE),
        live: has(F_LIVE),
        lagging: has(F_LAGGING),
        tolerated: has(F_TOLERATED),
        fresh_until: clock::from_ns(b[N_FRESH]),
        visible_lsn: b[N_VISIBLE],
    };
    let counters = Counters {
        down_epoch: b[N_DOWN_EPOCH],
        interrupt_epoch: b[N_INTR_EPOCH],
        applied: b[N_APPLIED],
    };
    Ok((status, snap, counters))
}
