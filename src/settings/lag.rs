//! The lag limits' cross-key rule. `MAX_LAG_SECONDS`, `MAX_LAG_BYTES` and
//! `LAG_CEILING_SECONDS` themselves, with their defaults and why, are rows of the
//! settings table (`table.rs`): a key left out gets its default; `None` turns it off.

use super::kind::Checked;
use super::{fail, key, Family, SettingsError};

/// `LAG_CEILING_SECONDS`' rule: the ceiling is above the seconds limit (when both are on).
pub(super) fn ceiling_above_limit(c: &Checked<'_>) -> Result<(), SettingsError> {
    let (Some(ceiling), Some(limit)) = (c.float("LAG_CEILING_SECONDS"), c.float("MAX_LAG_SECONDS"))
    else {
        return Ok(());
    };
    if ceiling > limit {
        return Ok(());
    }
    fail(
        Family::LagLimit,
        format!(
            "{} = {} must be greater than {} = {}",
            key("LAG_CEILING_SECONDS"),
            c.shown("LAG_CEILING_SECONDS"),
            key("MAX_LAG_SECONDS"),
            c.shown("MAX_LAG_SECONDS")
        ),
        "The ceiling is how stale reads may get while every replica is over \
         MAX_LAG_SECONDS; set it above the limit, or None to send those reads \
         to the primary.",
    )
}
