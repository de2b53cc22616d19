//! Every `REPLICA_ROUTER` key, declared once. From this table come: the key list (and
//! so the unknown-key error), the defaults, the validation of every simple kind (the
//! hand-written rules are only the structural ones and the cross-key ones each row
//! names), the typed `Options` and their Python attributes (`py_settings.rs`), the
//! shared-health identity (`shm/key.rs`) and the docs' reference (`make docs` writes
//! it into docs/settings.md; a test fails when it is out of date).
//!
//! To add a setting: one row here (under `options`, in the order it is checked and
//! documented), then use `options.<field>` where it acts. A row is in the shared-health
//! identity unless it says why not (`not_in_identity`).

use super::kind::{Kind, Lit, Setting, Val};
use super::typed::Typed;
use super::{custom, Family};

/// Calls the macro `$then` with the table: `structural { KEY = row; ... }` (checked by
/// hand against `DATABASES`), then `options { KEY: field: Type = row; ... }`.
macro_rules! with_table {
    ($then:ident) => {
        $then! {
            structural {
                PRIMARY = Setting::new(
                    Kind::Structural { accepts: "an alias of `DATABASES` (PostgreSQL)" },
                    Lit::Str("default"), Family::Alias,
                    "the alias that takes writes",
                    "[routing](routing.md)",
                ).through_nodes();
                REPLICAS = Setting::new(
                    Kind::Structural {
                        accepts: "`{\"replica\": {\"WEIGHT\": 2}, ...}`, `[\"replica\", ...]`, \
                                  `[]`, or `None`",
                    },
                    Lit::None, Family::Alias,
                    "the standbys and their read weights; None: the one other PostgreSQL \
                     alias, weight 1 (two or more: E003, list them)",
                    "[other databases](routing.md#adding-it-to-a-project-with-other-databases)",
                ).through_nodes();
            }
            options {
                PRIMARY_READ_WEIGHT: primary_read_weight: f64 = Setting::new(
                    Kind::Number {
                        min: 0.0, min_open: false, max: f64::INFINITY, must: "a number >= 0",
                    },
                    Lit::Float(1.0), Family::Weight,
                    "the primary's share of weighted reads; 0: it serves reads only as a \
                     fallback",
                    "[routing](routing.md#routing-rules)",
                ).then(custom::some_weight, "not 0 while every replica `WEIGHT` is 0");
                PROBE_INTERVAL: probe_interval: f64 = Setting::new(
                    Kind::Number {
                        min: 0.0, min_open: true, max: 86_400.0,
                        must: "a number of seconds > 0 and <= 86400",
                    },
                    Lit::Float(1.0), Family::Probing,
                    "seconds between probes of one node",
                    "[architecture](architecture.md#how-it-works)",
                );
                PROBE_TIMEOUT: probe_timeout: f64 = Setting::new(
                    Kind::Number {
                        min: 0.0, min_open: true, max: 86_400.0,
                        must: "a number of seconds > 0 and <= 86400",
                    },
                    Lit::Float(1.0), Family::Probing,
                    "seconds bounding connect + probe query, whatever the node does",
                    "[architecture](architecture.md#how-it-works)",
                );
                FALL: fall: u32 = Setting::new(
                    Kind::Integer { min: 1, max: 1000 },
                    Lit::Int(2), Family::Probing,
                    "consecutive failed probes before a node is down",
                    "[architecture](architecture.md#how-it-works)",
                );
                RISE: rise: u32 = Setting::new(
                    Kind::Integer { min: 1, max: 1000 },
                    Lit::Int(2), Family::Probing,
                    "consecutive good probes before it is back (also after lag)",
                    "[architecture](architecture.md#how-it-works)",
                );
                // On loopback or in one region a healthy standby is milliseconds behind;
                // 5 s is far above that noise and well under what a user notices as "my
                // change is gone".
                MAX_LAG_SECONDS: max_lag_seconds: Option<f64> = Setting::new(
                    Kind::Number {
                        min: 0.0, min_open: true, max: f64::INFINITY,
                        must: "a number > 0 or None",
                    },
                    Lit::Float(5.0), Family::LagLimit,
                    "a replica further behind leaves reads (lagging)",
                    "[lag](lag.md)",
                ).none_is_off();
                // 4 WAL segments. It catches a standby that is far behind when the seconds
                // cannot yet tell: right after start-up, the primary's position history is
                // only as old as the process.
                MAX_LAG_BYTES: max_lag_bytes: Option<u64> = Setting::new(
                    Kind::Integer { min: 1, max: i64::MAX },
                    Lit::Int(64 * 1024 * 1024), Family::LagLimit,
                    "same, in bytes of WAL (64 MiB)",
                    "[lag](lag.md)",
                ).none_is_off();
                LAG_CEILING_SECONDS: lag_ceiling_seconds: Option<f64> = Setting::new(
                    Kind::Number {
                        min: 0.0, min_open: true, max: f64::INFINITY,
                        must: "a number > 0 or None",
                    },
                    Lit::Float(10.0), Family::LagLimit,
                    "every replica lagging: the least-lagged keep serving plain reads, less \
                     and less, up to this lag",
                    "[lag](lag.md#when-every-standby-lags-the-herd-policy)",
                ).none_is_off()
                .then(super::lag::ceiling_above_limit, "greater than `MAX_LAG_SECONDS`");
                PIN_SECONDS: pin_seconds: f64 = Setting::new(
                    Kind::Number { min: 0.0, min_open: false, max: 86_400.0, must: "a number >= 0" },
                    Lit::Float(5.0), Family::Option,
                    "seconds reads stay on the primary after a write outside any unit of work",
                    "[routing](routing.md#which-consistency-tool-to-use)",
                ).not_in_identity("routing of one process's own reads after its write");
                COOKIE_NAME: cookie_name: String = Setting::new(
                    Kind::Text,
                    Lit::Str("replica_router_lsn"), Family::Option,
                    "read-your-writes middleware cookie",
                    "[routing](routing.md#read-your-writes-across-requests)",
                ).not_in_identity("read by the middleware, per request");
                COOKIE_MAX_AGE: cookie_max_age: u64 = Setting::new(
                    Kind::Integer { min: 1, max: i64::MAX },
                    Lit::Int(300), Family::Option,
                    "seconds the cookie is honoured",
                    "[routing](routing.md#read-your-writes-across-requests)",
                ).not_in_identity("read by the middleware, per request");
                TEST_MIRROR: test_mirror: bool = Setting::new(
                    Kind::Bool,
                    Lit::Bool(true), Family::Option,
                    "replicas mirror the primary under test runners",
                    "[testing your app](testing-your-app.md)",
                ).not_in_identity("test databases' setup, before any probe");
                TEST_REPLICA_READS: test_replica_reads: bool = Setting::new(
                    Kind::Bool,
                    Lit::Bool(false), Family::Option,
                    "under test runners, reads go to the primary unless True",
                    "[testing your app](testing-your-app.md)",
                ).not_in_identity("routing of reads under test runners, per process");
                SHARE_HEALTH: share_health: bool = Setting::new(
                    Kind::Bool,
                    Lit::Bool(true), Family::Option,
                    "one prober per host, shared by the worker processes (Linux); False: \
                     every process probes on its own",
                    "[shared health](shared-health.md)",
                ).not_in_identity("it decides whether a process shares at all");
                // Long enough for a planned switchover (about 3 s with Patroni on a quiet
                // cluster, more under load), short enough that a request does not hang on
                // a lost primary.
                PRIMARY_WAIT_TIMEOUT: primary_wait_timeout: f64 = Setting::new(
                    Kind::Number {
                        min: 0.0, min_open: false, max: 3600.0,
                        must: "a number of seconds from 0 to 3600",
                    },
                    Lit::Float(10.0), Family::Option,
                    "seconds a new write connection waits while no primary is known \
                     (switchover, failover); reads never wait",
                    "[roles](roles.md)",
                ).not_in_identity("how long a process's own new write connection waits");
                PATRONI_URLS: patroni_urls: Vec<String> = Setting::new(
                    Kind::Custom {
                        rule: custom::patroni_urls,
                        accepts: "a list of `http://host[:port][/path]` base URLs (`https://` is refused)",
                    },
                    Lit::EmptyList, Family::Option,
                    "Patroni REST base URLs: a node takes writes only while Patroni calls it leader",
                    "[roles](roles.md#patroni-patroni_urls)",
                );
            }
        }
    };
}
pub(crate) use with_table;

/// Defines `SETTINGS`, `KEYS` and `Options` from the table.
macro_rules! define {
    (
        structural { $( $skey:ident = $srow:expr ; )* }
        options { $( $key:ident : $field:ident : $ty:ty = $row:expr ; )* }
    ) => {
        /// Every setting, in the order they are checked and documented.
        pub const SETTINGS: &[Setting] = &[
            $( $srow.named(stringify!($skey), "", ""), )*
            $( $row.named(stringify!($key), stringify!($field), <$ty as Typed>::PY), )*
        ];

        /// The keys of `REPLICA_ROUTER`.
        pub const KEYS: &[&str] = &[ $( stringify!($skey), )* $( stringify!($key), )* ];

        /// The validated value of every non-structural setting (`RouterSettings`
        /// shows each as the attribute of the same name).
        #[derive(Clone, Debug, PartialEq)]
        pub struct Options {
            $( pub $field: $ty, )*
        }

        impl Options {
            /// From the checked values; `None` when one is missing or not of its
            /// field's type (the table's tests rule that out for every default).
            pub fn from_values(values: &[(&'static str, Val)]) -> Option<Options> {
                let get = |key: &str| values.iter().find(|(k, _)| *k == key).map(|(_, v)| v);
                Some(Options {
                    $( $field: <$ty as Typed>::from_val(get(stringify!($key))?)?, )*
                })
            }
        }
    };
}

#[cfg(test)]
pub(crate) use define;

with_table!(define);
