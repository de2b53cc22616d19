//! The rules the settings table names for keys its kinds cannot check alone
//! (`Kind::Custom`, `Setting::then`): a leaf that `table.rs` uses and that uses
//! nothing of `rules.rs`, which itself builds on the table.

use super::kind::{Checked, Val};
use super::{fail, key, Family, SettingsError, Value, HINT};

mod roles;

/// `PRIMARY_READ_WEIGHT`'s cross-key rule: some node can take reads.
pub(super) fn some_weight(c: &Checked<'_>) -> Result<(), SettingsError> {
    let primary_weight = c.float("PRIMARY_READ_WEIGHT").unwrap_or(1.0);
    if primary_weight == 0.0 && c.replicas.iter().all(|(_, w)| *w == 0.0) {
        return fail(
            Family::Weight,
            format!(
                "{} and every replica WEIGHT are 0: no node could take reads; give at least \
                 one a weight > 0",
                key("PRIMARY_READ_WEIGHT")
            ),
            HINT,
        );
    }
    Ok(())
}

/// `PATRONI_URLS`'s rule (`roles.rs`), as the table's kind of rule.
pub(super) fn patroni_urls(v: &Value) -> Result<Val, SettingsError> {
    roles::patroni_urls(v).map(Val::List)
}
