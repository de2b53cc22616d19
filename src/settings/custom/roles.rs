//! The rule of `PATRONI_URLS`, a setting of roles that change (part of the rules in
//! `custom.rs`, split off by concern; `PRIMARY_WAIT_TIMEOUT` is a plain row of the
//! settings table).

use super::super::{fail, key, Family, SettingsError, Value, HINT};

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
