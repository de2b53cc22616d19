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

use crate::node_status::NodeStatus;
use crate::probe::FaultKind;
use crate::select::SnapNode;

mod node;
use node::{decode_node, encode_node};

pub(crate) const MAGIC: u64 = u64::from_le_bytes(*b"RRSHARE\x01");
/// Bumped on any change of the layout below (also part of the file name).
pub(crate) const LAYOUT: u64 = 2;
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
/// The mailbox code of a re-probe request (no `FaultKind::code` is this large).
pub(crate) const REPROBE: u64 = u64::MAX - 1;
/// The most nodes a segment holds (the snapshot's masks are 64 bits wide).
pub(crate) const MAX_NODES: usize = 64;

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
        let (count, code) = self.mailbox_raw(idx);
        (count, FaultKind::from_code(code))
    }

    /// The mailbox count and the raw code last posted (a fault kind, or `REPROBE`).
    pub(crate) fn mailbox_raw(&self, idx: usize) -> (u64, u64) {
        let m = self.mail(idx);
        let count = m[0].load(Ordering::Acquire);
        (count, m[1].load(Ordering::Relaxed))
    }

    /// A follower asks the leader to re-probe every node now (a write met a demoted
    /// primary, or waits for a primary): node 0's mailbox with the `REPROBE` code,
    /// which no fault kind has (a leader of an older build ignores it).
    pub(crate) fn post_reprobe(&self) {
        let m = self.mail(0);
        m[1].store(REPROBE, Ordering::Relaxed);
        m[0].fetch_add(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests;
