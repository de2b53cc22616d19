//! The Rust types of the `Options` fields: each is made from a checked value (`Val`)
//! and has a Python type (what `RouterSettings` shows, and the stub says).

use super::kind::Val;

/// A Rust field type of `Options`: made from a checked value, and its Python type.
pub trait Typed: Sized {
    const PY: &'static str;
    fn from_val(v: &Val) -> Option<Self>;
}

impl Typed for f64 {
    const PY: &'static str = "float";
    fn from_val(v: &Val) -> Option<Self> {
        match v {
            Val::Float(f) => Some(*f),
            _ => None,
        }
    }
}

impl Typed for u32 {
    const PY: &'static str = "int";
    fn from_val(v: &Val) -> Option<Self> {
        match v {
            Val::Int(i) => u32::try_from(*i).ok(),
            _ => None,
        }
    }
}

impl Typed for u64 {
    const PY: &'static str = "int";
    fn from_val(v: &Val) -> Option<Self> {
        match v {
            Val::Int(i) => u64::try_from(*i).ok(),
            _ => None,
        }
    }
}

impl Typed for bool {
    const PY: &'static str = "bool";
    fn from_val(v: &Val) -> Option<Self> {
        match v {
            Val::Bool(b) => Some(*b),
            _ => None,
        }
    }
}

impl Typed for String {
    const PY: &'static str = "str";
    fn from_val(v: &Val) -> Option<Self> {
        match v {
            Val::Str(s) => Some(s.clone()),
            _ => None,
        }
    }
}

impl Typed for Vec<String> {
    const PY: &'static str = "list[str]";
    fn from_val(v: &Val) -> Option<Self> {
        match v {
            Val::List(items) => Some(items.clone()),
            _ => None,
        }
    }
}

impl Typed for Option<f64> {
    const PY: &'static str = "float | None";
    fn from_val(v: &Val) -> Option<Self> {
        match v {
            Val::Off => Some(None),
            other => f64::from_val(other).map(Some),
        }
    }
}

impl Typed for Option<u64> {
    const PY: &'static str = "int | None";
    fn from_val(v: &Val) -> Option<Self> {
        match v {
            Val::Off => Some(None),
            other => u64::from_val(other).map(Some),
        }
    }
}
