//! The shared segment's layout, and its encoding and decoding. Pure: it works on a
//! slice of `AtomicU64` words (the mmap'd file, or a `Vec` in tests).
//!
//! Layout, in 64-bit words: a header (`H_*`), then one block of `NODE_WORDS` per node
//! (what `status()` and the pick path need), then one mailbox of `MAIL_WORDS` per node
//! (passive faults handed from followers to the leader). The leader writes the
//! heartbeat, its pid, the checksum and the node blocks under a seqlock (`H_SEQ` odd
//! while writing); a reader copies them, checks the sequence did not move and the
//! checksum matches, and only then decodes. The mailboxes are outside the seqlock.

use std::sync::atomic::{fence, AtomicU64, Ordering};
use std::time::Instant;

use crate::health::{Health, State};
use crate::probe::Sample;
use crate::probe::{Fault, FaultKind};
use crate::select::SnapNode;
use crate::step::NodeStatus;

use super::clock;

pub(crate) const MAGIC: u64 = u64::from_le_bytes(*b"RRSHARE\x01");
/// Bumped on any change of the layout below (also part of the file name).
pub(crate) const LAYOUT: u64 = 1;
pub(crate) const H_MAGIC: usize = 0;
const H_LAYOUT: usize = 1;
const H_CRATE: usize = 2;
const H_KEY: usize = 3;
const H_NODES: usize = 4;
const H_SIZE: usize = 5;
const H_SEQ: usize = 6;
/// First word under the seqlock: the heartbeat (CLOCK_MONOTONIC ns of the publish).
const H_BEAT: usize = 7;
const H_PID: usize = 8;
const H_SUM: usize = 9;
pub(crate) const HEADER_WORDS: usize = 16;
pub(crate) const NODE_WORDS: usize = 64;
pub(crate) const MAIL_WORDS: usize = 2;
const STATUS_BYTES: usize = 32;
const ERROR_BYTES: usize = 256;
/// The most nodes a segment holds (the snapshot's masks are 64 bits wide).
pub(crate) const MAX_NODES: usize = 64;
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
const N_PROBES: usize = 17;
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
const _: () = assert!(N_ERR + ERROR_BYTES / 8 <= NODE_WORDS);

const F_ELIGIBLE: u64 = 1;
const F_LIVE: u64 = 2;
const F_LAGGING: u64 = 4;
const F_MISMATCH: u64 = 8;
const F_SAMPLE: u64 = 16;
const F_RECOVERY: u64 = 32;
const F_PAUSED: u64 = 64;
const F_ERROR: u64 = 128;
const F_RECEIVER: u64 = 256;

const STATES: [State; 5] = [
    State::Unknown,
    State::Up,
    State::Down,
    State::Lagging,
    State::Misconfigured,
];

/// Words of a segment for `nodes` nodes.
pub(crate) fn words_for(nodes: usize) -> usize {
    HEADER_WORDS + nodes * (NODE_WORDS + MAIL_WORDS)
}

/// FNV-1a over bytes, 64 bits: stable across builds and platforms.
pub(crate) fn fnv(bytes: &[u8], seed: u64) -> u64 {
    bytes.iter().fold(seed, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

pub(crate) fn crate_hash() -> u64 {
    fnv(env!("CARGO_PKG_VERSION").as_bytes(), 0xcbf2_9ce4_8422_2325)
}

fn checksum(words: &[u64]) -> u64 {
    let mut h: u64 = 0x9e37_79b9_7f4a_7c15;
    for (i, w) in words.iter().enumerate() {
        if i + H_BEAT == H_SUM {
            continue;
        }
        h = (h ^ w).wrapping_mul(0xff51_afd7_ed55_8ccd).rotate_left(23);
    }
    h
}

/// What one node's block carries besides `NodeStatus`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counters {
    /// Bumped each time the node went down (or misconfigured).
    pub down_epoch: u64,
    /// Bumped each time it went down for timeouts (in-flight queries to interrupt).
    pub interrupt_epoch: u64,
    /// The mailbox count of passive faults the leader has applied.
    pub applied: u64,
}

/// A whole decoded segment.
#[derive(Clone, Debug)]
pub(crate) struct Decoded {
    pub seq: u64,
    pub heartbeat_ns: u64,
    pub leader_pid: u32,
    pub snap: Vec<SnapNode>,
    pub nodes: Vec<NodeStatus>,
    pub counters: Vec<Counters>,
}

/// Why a segment was not read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Rejected {
    /// All zero: no leader wrote it yet.
    Empty,
    /// Being written: try again later.
    Torn,
    /// Not ours (another version, configuration or program), or corrupt.
    Foreign(String),
}

pub(crate) struct Segment<'a> {
    pub words: &'a [AtomicU64],
    pub key: u64,
    pub nodes: usize,
}

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

fn encode_node(n: &NodeStatus, s: &SnapNode, c: Counters, block: &mut [u64]) {
    let sample = n.sample.as_ref();
    let bit = |b: bool, f: u64| if b { f } else { 0 };
    block[N_FLAGS] = bit(s.eligible, F_ELIGIBLE)
        | bit(s.live, F_LIVE)
        | bit(s.lagging, F_LAGGING)
        | bit(n.role_mismatch, F_MISMATCH)
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

fn decode_node(
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
        role_mismatch: has(F_MISMATCH),
        probes: b[N_PROBES],
        failed_probes: b[N_FAILED],
        passive_faults: b[N_PASSIVE],
    };
    let snap = SnapNode {
        weight,
        eligible: has(F_ELIGIBLE),
        live: has(F_LIVE),
        lagging: has(F_LAGGING),
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

impl Segment<'_> {
    fn payload_len(&self) -> usize {
        HEADER_WORDS - H_BEAT + self.nodes * NODE_WORDS
    }

    /// Writes the header of a new leader (the seqlock word is kept).
    pub(crate) fn init_header(&self) {
        let w = self.words;
        w[H_LAYOUT].store(LAYOUT, Ordering::Relaxed);
        w[H_CRATE].store(crate_hash(), Ordering::Relaxed);
        w[H_KEY].store(self.key, Ordering::Relaxed);
        w[H_NODES].store(self.nodes as u64, Ordering::Relaxed);
        w[H_SIZE].store((self.words.len() * 8) as u64, Ordering::Relaxed);
        w[H_MAGIC].store(MAGIC, Ordering::Release);
    }

    /// Publishes every node (one writer: the leader).
    pub(crate) fn write(
        &self,
        pid: u32,
        beat_ns: u64,
        nodes: &[(&NodeStatus, &SnapNode, Counters)],
    ) {
        let mut payload = vec![0u64; self.payload_len()];
        payload[0] = beat_ns;
        payload[H_PID - H_BEAT] = u64::from(pid);
        for (i, (n, s, c)) in nodes.iter().take(self.nodes).enumerate() {
            let at = HEADER_WORDS - H_BEAT + i * NODE_WORDS;
            encode_node(n, s, *c, &mut payload[at..at + NODE_WORDS]);
        }
        payload[H_SUM - H_BEAT] = checksum(&payload);
        let seq = &self.words[H_SEQ];
        // Even: a crashed writer may have left it odd.
        let base = (seq.load(Ordering::Relaxed) + 1) & !1;
        seq.store(base + 1, Ordering::Relaxed);
        fence(Ordering::Release);
        for (dst, v) in self.words[H_BEAT..H_BEAT + payload.len()]
            .iter()
            .zip(&payload)
        {
            dst.store(*v, Ordering::Relaxed);
        }
        seq.store(base + 2, Ordering::Release);
    }

    /// The sequence number: a reader can skip decoding when it did not move.
    pub(crate) fn seq(&self) -> u64 {
        self.words[H_SEQ].load(Ordering::Acquire)
    }

    fn check_header(&self) -> Result<(), Rejected> {
        let w = |i: usize| self.words[i].load(Ordering::Acquire);
        if w(H_MAGIC) == 0 && w(H_SEQ) == 0 {
            return Err(Rejected::Empty);
        }
        let expect = [
            (H_MAGIC, MAGIC, "magic"),
            (H_LAYOUT, LAYOUT, "layout version"),
            (H_CRATE, crate_hash(), "library version"),
            (H_KEY, self.key, "configuration key"),
            (H_NODES, self.nodes as u64, "node count"),
            (H_SIZE, (self.words.len() * 8) as u64, "size"),
        ];
        for (at, want, what) in expect {
            if w(at) != want {
                return Err(Rejected::Foreign(format!("its {what} does not match")));
            }
        }
        Ok(())
    }

    /// Reads a consistent copy, validated, or says why not.
    pub(crate) fn read(&self, fall: u32, rise: u32) -> Result<Decoded, Rejected> {
        self.check_header()?;
        let mut payload = vec![0u64; self.payload_len()];
        let seq = &self.words[H_SEQ];
        let mut attempt = 0;
        let s1 = loop {
            let s1 = seq.load(Ordering::Acquire);
            if s1 & 1 == 0 {
                for (dst, src) in payload.iter_mut().zip(&self.words[H_BEAT..]) {
                    *dst = src.load(Ordering::Relaxed);
                }
                fence(Ordering::Acquire);
                if seq.load(Ordering::Relaxed) == s1 {
                    break s1;
                }
            }
            attempt += 1;
            if attempt >= 8 {
                return Err(Rejected::Torn);
            }
            std::thread::yield_now();
        };
        if s1 == 0 {
            return Err(Rejected::Empty);
        }
        if checksum(&payload) != payload[H_SUM - H_BEAT] {
            return Err(Rejected::Foreign("bad checksum".into()));
        }
        let pid = u32::try_from(payload[H_PID - H_BEAT])
            .map_err(|_| Rejected::Foreign("bad pid".into()))?;
        let mut out = Decoded {
            seq: s1,
            heartbeat_ns: payload[0],
            leader_pid: pid,
            snap: Vec::with_capacity(self.nodes),
            nodes: Vec::with_capacity(self.nodes),
            counters: Vec::with_capacity(self.nodes),
        };
        for i in 0..self.nodes {
            let at = HEADER_WORDS - H_BEAT + i * NODE_WORDS;
            let (n, s, c) = decode_node(&payload[at..at + NODE_WORDS], fall, rise)
                .map_err(Rejected::Foreign)?;
            out.nodes.push(n);
            out.snap.push(s);
            out.counters.push(c);
        }
        Ok(out)
    }

    fn mail(&self, idx: usize) -> &[AtomicU64] {
        let at = HEADER_WORDS + self.nodes * NODE_WORDS + idx * MAIL_WORDS;
        &self.words[at..at + MAIL_WORDS]
    }

    /// A follower hands a passive fault of node `idx` to the leader; returns the new
    /// mailbox count (the fault is applied once the leader's `applied` reaches it).
    pub(crate) fn post_fault(&self, idx: usize, kind: FaultKind) -> u64 {
        let m = self.mail(idx);
        m[1].store(kind.code(), Ordering::Relaxed);
        m[0].fetch_add(1, Ordering::AcqRel) + 1
    }

    /// The leader polls: the mailbox count and the last fault kind posted.
    pub(crate) fn mailbox(&self, idx: usize) -> (u64, Option<FaultKind>) {
        let m = self.mail(idx);
        let count = m[0].load(Ordering::Acquire);
        (count, FaultKind::from_code(m[1].load(Ordering::Relaxed)))
    }
}

#[cfg(test)]
mod tests;
