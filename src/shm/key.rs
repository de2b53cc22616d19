//! The name of a cluster's shared files: a hash of everything that changes what the
//! prober does or publishes. Never the password (it is not hashed either: a short
//! password could be found from the hash).

use crate::config::ClusterConfig;

use super::segment::{fnv, LAYOUT};

/// The text that is hashed (no secret in it).
pub(crate) fn key_text(cfg: &ClusterConfig) -> String {
    let mut s = format!(
        "layout={LAYOUT};interval={:?};timeout={:?};fall={};rise={};lag_s={:?};lag_b={:?};lag_ceiling={:?}",
        cfg.probe_interval,
        cfg.probe_timeout,
        cfg.fall,
        cfg.rise,
        cfg.max_lag_seconds,
        cfg.max_lag_bytes,
        cfg.lag_ceiling_seconds
    );
    for n in &cfg.nodes {
        s.push_str(&format!(
            "|{:?};{};{:?};{};{:?};{:?};{:?};{:?};{:?}",
            n.alias,
            n.role.as_str(),
            n.host,
            n.port,
            n.dbname,
            n.user,
            n.sslmode,
            n.sslrootcert,
            n.weight
        ));
    }
    s
}

/// 128 bits of `key_text` as hex: the files' base name, and (its first half) the
/// key in the segment's header.
pub(crate) fn key(cfg: &ClusterConfig) -> (String, u64) {
    let text = key_text(cfg);
    let a = fnv(text.as_bytes(), 0xcbf2_9ce4_8422_2325);
    let b = fnv(text.as_bytes(), 0x8422_2325_cbf2_9ce4 ^ 0x5555);
    (format!("{a:016x}{b:016x}-v{LAYOUT}"), a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::cluster;

    #[test]
    fn key_never_holds_the_password_and_ignores_it() {
        let c = cluster(&[1.0, 1.0]);
        assert!(!key_text(&c).contains("s3cret"), "{}", key_text(&c));
        let mut other = c.clone();
        other.nodes[1].password = Some("another".into());
        assert_eq!(key(&c), key(&other));
        let (name, _) = key(&c);
        assert!(!name.contains("s3cret"));
    }

    #[test]
    fn key_changes_with_what_probing_depends_on() {
        let c = cluster(&[1.0, 1.0]);
        let mut host = c.clone();
        host.nodes[1].host = "10.0.0.9".into();
        let mut fall = c.clone();
        fall.fall = 3;
        let mut weight = c.clone();
        weight.nodes[1].weight = 2.0;
        for other in [host, fall, weight] {
            assert_ne!(key(&c), key(&other));
        }
    }
}
