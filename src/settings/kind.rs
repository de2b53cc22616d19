//! What one row of the settings table (`table.rs`) says, and the generic rules derived
//! from it: the value a key takes (given, or its default), its validation by kind, the
//! text the docs show, and the shared-health identity. No Python.

use super::{fail, key, Family, SettingsError, Value, HINT};

/// A default, as a Python literal (what `REPLICA_ROUTER` would say to set it).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Lit {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(&'static str),
    EmptyList,
}

impl Lit {
    /// The default as if the user had written it (it is validated like a given value).
    pub fn value(self) -> Value {
        match self {
            Lit::None => Value::None,
            Lit::Bool(b) => Value::Bool(b),
            Lit::Int(i) => Value::Int(i),
            Lit::Float(f) => Value::Float(f),
            Lit::Str(s) => Value::Str(s.to_string()),
            Lit::EmptyList => Value::List(Vec::new()),
        }
    }

    /// Python source text, strings double-quoted as the docs write them.
    pub fn python(self) -> String {
        match self {
            Lit::Str(s) => format!("{s:?}"),
            other => other.value().repr(),
        }
    }
}

/// A validated value: what the typed `Options` fields are made from.
#[derive(Clone, Debug, PartialEq)]
pub enum Val {
    /// Set to `None` where `None` turns the setting off.
    Off,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<String>),
}

/// A rule written by hand for one key (its kind is not one of the simple ones).
pub type Rule = fn(&Value) -> Result<Val, SettingsError>;
/// A rule across keys, run once the key that carries it is checked (every key before
/// it in the table is checked by then).
pub type Cross = fn(&Checked<'_>) -> Result<(), SettingsError>;

/// What values a key takes, and so how it is validated.
#[derive(Clone, Copy)]
pub enum Kind {
    /// Checked by hand against `DATABASES` (`rules.rs`); it shapes the node list.
    Structural { accepts: &'static str },
    /// `True` or `False`.
    Bool,
    /// A number (int or float, never a bool), finite, from `min` (excluded when
    /// `min_open`) to `max`. `must` is the error's wording ("must be {must}, got ...").
    Number {
        min: f64,
        min_open: bool,
        max: f64,
        must: &'static str,
    },
    /// An int (never a bool) from `min` to `max`.
    Integer { min: i64, max: i64 },
    /// A non-empty string.
    Text,
    /// A rule of its own; `accepts` is what the docs say it takes.
    Custom { rule: Rule, accepts: &'static str },
}

/// Whether a setting is part of the shared-health identity (`shm/key.rs`): processes
/// share one prober only when every setting in it is equal.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Identity {
    /// Its value is digested.
    In,
    /// It shapes the node list, whose every node (alias, role, weight, address) is
    /// digested.
    Nodes,
    /// Left out, and why (the prober neither observes nor decides by it).
    Out(&'static str),
}

/// One row of the settings table. Build it with `Setting::new` and the modifiers; the
/// key, the field and its Python type are filled in by the table's macro.
#[derive(Clone, Copy)]
pub struct Setting {
    pub key: &'static str,
    /// The `RouterSettings` attribute (and `Options` field); "" for a structural key.
    pub field: &'static str,
    /// The attribute's Python type; "" for a structural key.
    pub py_type: &'static str,
    pub kind: Kind,
    pub default: Lit,
    /// `None` turns it off (otherwise `None` means the default).
    pub none_is_off: bool,
    /// The family whose system check id reports a bad value.
    pub family: Family,
    /// One line for the docs (the meaning column, the defaults' comment).
    pub doc: &'static str,
    /// A Markdown link to where the docs explain it.
    pub see: &'static str,
    pub identity: Identity,
    /// A rule across keys run right after this key, and what it requires.
    pub cross: Option<(Cross, &'static str)>,
}

impl Setting {
    /// A setting that is in the shared-health identity, with no cross-key rule.
    pub const fn new(
        kind: Kind,
        default: Lit,
        family: Family,
        doc: &'static str,
        see: &'static str,
    ) -> Setting {
        Setting {
            key: "",
            field: "",
            py_type: "",
            kind,
            default,
            none_is_off: false,
            family,
            doc,
            see,
            identity: Identity::In,
            cross: None,
        }
    }

    pub const fn none_is_off(self) -> Setting {
        Setting {
            none_is_off: true,
            ..self
        }
    }

    /// Leaves it out of the shared-health identity; `why` is required.
    pub const fn not_in_identity(self, why: &'static str) -> Setting {
        Setting {
            identity: Identity::Out(why),
            ..self
        }
    }

    /// In the identity through the node list it shapes.
    pub const fn through_nodes(self) -> Setting {
        Setting {
            identity: Identity::Nodes,
            ..self
        }
    }

    /// Runs `rule` (which requires `says`) right after this key is checked.
    pub const fn then(self, rule: Cross, says: &'static str) -> Setting {
        Setting {
            cross: Some((rule, says)),
            ..self
        }
    }

    /// Names the row (the table's macro does).
    pub const fn named(self, key: &'static str, field: &'static str, py: &'static str) -> Setting {
        Setting {
            key,
            field,
            py_type: py,
            ..self
        }
    }

    pub fn is_structural(&self) -> bool {
        matches!(self.kind, Kind::Structural { .. })
    }

    /// The value `REPLICA_ROUTER` gives this key (its default when absent or `None`,
    /// unless `None` turns it off), validated by its kind.
    pub fn check(&self, router: &Value) -> Result<Val, SettingsError> {
        let v = match router.get(self.key) {
            Some(Value::None) if self.none_is_off => return Ok(Val::Off),
            None | Some(Value::None) => self.default.value(),
            Some(v) => v.clone(),
        };
        let must = |what: &str| {
            fail(
                self.family,
                format!("{} must be {what}, got {}", key(self.key), v.repr()),
                HINT,
            )
        };
        match self.kind {
            Kind::Structural { .. } => Ok(Val::Off),
            Kind::Bool => match v {
                Value::Bool(b) => Ok(Val::Bool(b)),
                _ => must("True or False"),
            },
            Kind::Number {
                min,
                min_open,
                max,
                must: says,
            } => match v.number() {
                Some(f)
                    if f.is_finite() && (if min_open { f > min } else { f >= min }) && f <= max =>
                {
                    Ok(Val::Float(f))
                }
                _ => must(says),
            },
            Kind::Integer { min, max } => match v {
                Value::Int(i) if (min..=max).contains(&i) => Ok(Val::Int(i)),
                _ => must(&format!("an integer from {min} to {max}")),
            },
            Kind::Text => match &v {
                Value::Str(s) if !s.is_empty() => Ok(Val::Str(s.clone())),
                _ => must("a non-empty string"),
            },
            Kind::Custom { rule, .. } => rule(&v),
        }
    }

    /// What the docs say it accepts (derived from the kind).
    pub fn accepts(&self) -> String {
        let mut text = match self.kind {
            Kind::Structural { accepts } | Kind::Custom { accepts, .. } => accepts.to_string(),
            Kind::Bool => "`True` or `False`".into(),
            Kind::Number {
                min, min_open, max, ..
            } => match (min_open, max.is_finite()) {
                (true, false) => format!("a number > {min}"),
                (false, false) => format!("a number >= {min}"),
                (true, true) => format!("a number > {min} and <= {max}"),
                (false, true) => format!("a number from {min} to {max}"),
            },
            Kind::Integer { min, max: i64::MAX } => format!("an integer >= {min}"),
            Kind::Integer { min, max } => format!("an integer from {min} to {max}"),
            Kind::Text => "a non-empty string".into(),
        };
        if self.none_is_off {
            text.push_str(", or `None` (off)");
        }
        if let Some((_, says)) = self.cross {
            text.push_str("; ");
            text.push_str(says);
        }
        text
    }
}

/// What is checked so far: a cross-key rule reads the values of the keys before it.
pub struct Checked<'a> {
    pub router: &'a Value,
    /// The replicas and their weights (the structural rules ran first).
    pub replicas: &'a [(String, f64)],
    pub table: &'a [Setting],
    pub values: Vec<(&'static str, Val)>,
}

impl Checked<'_> {
    pub fn get(&self, key: &str) -> Option<&Val> {
        self.values.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// A float value (`None`: off, or not checked yet).
    pub fn float(&self, key: &str) -> Option<f64> {
        match self.get(key) {
            Some(Val::Float(f)) => Some(*f),
            _ => None,
        }
    }

    /// The value as the user gave it, or its default marked so (for messages).
    pub fn shown(&self, key: &str) -> String {
        match self.router.get(key) {
            Some(v) => v.repr(),
            None => {
                let default = self.table.iter().find(|s| s.key == key);
                let text = default.map_or_else(String::new, |s| s.default.value().repr());
                format!("{text} (default)")
            }
        }
    }
}

/// Checks every key of `table` that is not structural, in order, each cross-key rule
/// right after its key; the values by key.
pub fn check_all(
    table: &[Setting],
    router: &Value,
    replicas: &[(String, f64)],
) -> Result<Vec<(&'static str, Val)>, SettingsError> {
    let mut checked = Checked {
        router,
        replicas,
        table,
        values: Vec::with_capacity(table.len()),
    };
    for s in table.iter().filter(|s| !s.is_structural()) {
        let v = s.check(router)?;
        checked.values.push((s.key, v));
        if let Some((rule, _)) = s.cross {
            rule(&checked)?;
        }
    }
    Ok(checked.values)
}
