//! The settings of roles that change: `PRIMARY_WAIT_TIMEOUT` and `PATRONI_URLS`
//! (part of the rules in `rules.rs`, split off by concern).

use super::super::{fail, key, Family, SettingsError, Value, HINT};

/// Long enough for a planned switchover (about 3 s with Patroni on a quiet cluster,
/// more under load), short enough that a request does not hang on a lost primary.
pub(super) const DEFAULT_PRIMARY_WAIT: f64 = 10.0;

/// `PRIMARY_WAIT_TIMEOUT`: seconds, from 0 (no wait) to an hour.
pub(super) fn primary_wait_timeout(v: &Value) -> Result<f64, SettingsError> {
    match v.number() {
        Some(f) if f.is_finite() && (0.0..=3600.0).contains(&f) => Ok(f),
        _ => fail(
            Family::Option,
            format!(
                "{} must be a number of seconds from 0 to 3600, got {}",
                key("PRIMARY_WAIT_TIMEOUT"),
                v.repr()
            ),
            HINT,
        ),
    }
}

/// `PATRONI_URLS`: a list (or tuple) of `http://host[:port][/path]` base URLs (the
/// form `patroni::Url` parses; `https://` is refused, see docs/roles.md).
pub(super) fn patroni_urls(v: &Value) -> Result<Vec<String>, SettingsError> {
    let bad = |what: String| {
        fail(
            Family::Option,
            format!(
                "{} must be a list of Patroni REST base URLs (http://host:port), {what}",
                key("PATRONI_URLS")
            ),
            HINT,
        )
    };
    let items = match v {
        Value::None => return Ok(Vec::new()),
        Value::List(items) => items,
        other => return bad(format!("got {}", other.repr())),
    };
    let mut urls = Vec::with_capacity(items.len());
    for item in items {
        let Value::Str(u) = item else {
            return bad(format!("got the item {}", item.repr()));
        };
        match crate::patroni::Url::parse(u) {
            Ok(url) => urls.push(url.text),
            Err(why) => return bad(format!("got the item {}: {why}", item.repr())),
        }
    }
    Ok(urls)
}
