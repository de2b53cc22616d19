//! The rule of `PATRONI_URLS`, a setting of roles that change (part of the rules in
//! `rules.rs`, split off by concern; `PRIMARY_WAIT_TIMEOUT` is a plain row of the
//! settings table).

use super::super::{fail, key, Family, SettingsError, Value, HINT};

/// `PATRONI_URLS`: a list (or tuple) of `http://` or `https://` base URLs.
pub(super) fn patroni_urls(v: &Value) -> Result<Vec<String>, SettingsError> {
    let bad = |what: String| {
        fail(
            Family::Option,
            format!(
                "{} must be a list of Patroni REST base URLs (http:// or https://), {what}",
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
        match item {
            Value::Str(u)
                if (u.starts_with("http://") || u.starts_with("https://"))
                    && u.len() > "https://".len()
                    && !u.chars().any(char::is_whitespace) =>
            {
                urls.push(u.trim_end_matches('/').to_string())
            }
            other => return bad(format!("got the item {}", other.repr())),
        }
    }
    Ok(urls)
}
