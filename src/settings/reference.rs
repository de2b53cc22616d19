//! What the settings table says to the outside: the shared-health identity
//! (`shm/key.rs`) and the docs' reference (`RouterSettings.reference()`, which
//! `make docs` renders into docs/settings.md).

use super::kind::{Identity, Setting, Val};

/// The settings part of the shared-health identity: every value whose row is `In`.
pub fn identity(table: &[Setting], values: &[(&'static str, Val)]) -> String {
    let mut text = String::new();
    for s in table.iter().filter(|s| s.identity == Identity::In) {
        if let Some((_, v)) = values.iter().find(|(k, _)| *k == s.key) {
            text.push_str(&format!("{}={v:?};", s.key));
        }
    }
    text
}

/// One row of the docs' reference, every text derived from the table's row.
#[derive(Clone, Debug, PartialEq)]
pub struct Reference {
    pub key: &'static str,
    /// The `RouterSettings` attribute and its Python type (`None`: structural key).
    pub attribute: Option<(&'static str, &'static str)>,
    /// The default as Python source.
    pub default: String,
    pub accepts: String,
    pub check_id: &'static str,
    pub doc: &'static str,
    pub see: &'static str,
    /// Whether processes with different values never share health.
    pub in_identity: bool,
    /// How it is in the identity, or why it is not.
    pub identity_note: &'static str,
}

impl Setting {
    pub fn reference(&self) -> Reference {
        let (in_identity, identity_note) = match self.identity {
            Identity::In => (true, ""),
            Identity::Nodes => (true, "through the node list it shapes"),
            Identity::Out(why) => (false, why),
        };
        Reference {
            key: self.key,
            attribute: (!self.field.is_empty()).then_some((self.field, self.py_type)),
            default: self.default.python(),
            accepts: self.accepts(),
            check_id: self.family.check_id(),
            doc: self.doc,
            see: self.see,
            in_identity,
            identity_note,
        }
    }
}
