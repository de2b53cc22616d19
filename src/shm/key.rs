//! The name of a cluster's shared files: a keyed digest (HMAC-SHA256) of everything
//! that decides what the prober does or publishes, credentials included, so that
//! processes share health only when their probes would come out the same. The key is
//! the host user's secret (`files::secret`, 0600 in the private directory): the name
//! cannot be used to test guesses of a password by anyone without that file.

use crate::config::ClusterConfig;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::segment::LAYOUT;

/// The text that is digested besides the credentials (no secret in it): the settings
/// in the identity (every setting the settings table does not leave out, by key and
/// value: `ClusterConfig::identity`), then each node.
pub(crate) fn key_text(cfg: &ClusterConfig) -> String {
    let mut s = format!("layout={LAYOUT};{}", cfg.identity);
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

/// The files' base name (128 bits of the digest, as hex) and the key in the
/// segment's header (its first 64 bits). `secret`: the host user's key.
pub(crate) fn key(cfg: &ClusterConfig, secret: &[u8]) -> Result<(String, u64), String> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret)
        .map_err(|_| "unusable secret".to_string())?;
    mac.update(key_text(cfg).as_bytes());
    for n in &cfg.nodes {
        // Length-prefixed, so that no two credential lists digest the same bytes.
        let password = n.password.as_deref().unwrap_or("");
        mac.update(b"|credentials:");
        mac.update(&(n.password.is_some() as u64).to_le_bytes());
        mac.update(&(password.len() as u64).to_le_bytes());
        mac.update(password.as_bytes());
    }
    let digest = mac.finalize().into_bytes();
    let mut head = [0u8; 8];
    head.copy_from_slice(&digest[..8]);
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    // Never 0: a zero key would match a segment that was never written.
    Ok((format!("{hex}-v{LAYOUT}"), u64::from_le_bytes(head) | 1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::cluster;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn k(c: &ClusterConfig) -> (String, u64) {
        key(c, SECRET).unwrap_or_default()
    }

    #[test]
    fn key_holds_no_password_but_changes_with_it() {
        let c = cluster(&[1.0, 1.0]);
        assert!(!key_text(&c).contains("s3cret"), "{}", key_text(&c));
        let (name, _) = k(&c);
        assert!(!name.contains("s3cret"));
        let mut other = c.clone();
        other.nodes[1].password = Some("another".into());
        assert_ne!(k(&c), k(&other));
        let mut none = c.clone();
        none.nodes[1].password = None;
        let mut empty = c.clone();
        empty.nodes[1].password = Some(String::new());
        assert_ne!(k(&none), k(&empty));
        assert_eq!(k(&c), k(&c.clone()));
    }

    #[test]
    fn key_depends_on_the_secret() {
        let c = cluster(&[1.0, 1.0]);
        let other = key(&c, b"another secret of the host user!").unwrap_or_default();
        assert_ne!(k(&c), other);
    }

    #[test]
    fn key_changes_with_what_probing_depends_on() {
        let c = cluster(&[1.0, 1.0]);
        let mut host = c.clone();
        host.nodes[1].host = "10.0.0.9".into();
        let mut weight = c.clone();
        weight.nodes[1].weight = 2.0;
        let mut user = c.clone();
        user.nodes[1].user = "other".into();
        for other in [host, weight, user] {
            assert_ne!(k(&c), k(&other));
        }
    }

    /// Every setting of the table changes the key unless its row says why not; those
    /// rows change nothing.
    #[test]
    fn key_follows_the_settings_table() {
        use crate::settings::table_tests::{another_value, built, with};
        use crate::settings::{Identity, SETTINGS};

        let base = k(&built(&[]).cluster);
        for s in SETTINGS.iter().filter(|s| !s.is_structural()) {
            let changed = k(&built(&with(s.key, another_value(s))).cluster);
            match s.identity {
                Identity::In => assert_ne!(base, changed, "{} is in the identity", s.key),
                Identity::Out(why) => {
                    assert!(!why.is_empty(), "{}", s.key);
                    assert_eq!(base, changed, "{} is left out: {why}", s.key);
                }
                Identity::Nodes => {}
            }
        }
    }
}
