//! The lag rules: `MAX_LAG_SECONDS`, `MAX_LAG_BYTES` and `LAG_CEILING_SECONDS`, with
//! their defaults. A key left out gets its default; a key set to `None` is off.

use super::{fail, integer, key, Family, SettingsError, Value, HINT};

/// Seconds of replay behind the primary before a replica leaves reads. On loopback or
/// in one region a healthy standby is milliseconds behind; 5 s is far above that noise
/// and well under what a user notices as "my change is gone".
pub const DEFAULT_MAX_LAG_SECONDS: f64 = 5.0;
/// WAL bytes behind the primary (4 WAL segments). It catches a standby that is far
/// behind when the seconds cannot yet tell: right after start-up, the primary's
/// position history is only as old as the process.
pub const DEFAULT_MAX_LAG_BYTES: u64 = 64 * 1024 * 1024;
/// While every replica is over a limit, reads that need no fresh data still go to the
/// least-lagged replicas until their lag reaches this many seconds.
pub const DEFAULT_LAG_CEILING_SECONDS: f64 = 10.0;

/// The three lag settings, validated.
pub struct LagLimits {
    pub max_lag_seconds: Option<f64>,
    pub max_lag_bytes: Option<u64>,
    pub lag_ceiling_seconds: Option<f64>,
}

/// `v` is `None` when the key is absent (the default applies), `Some(Value::None)` when
/// it is set to `None` (the limit is off).
fn positive_seconds(
    name: &str,
    v: Option<&Value>,
    default: f64,
) -> Result<Option<f64>, SettingsError> {
    match v {
        None => Ok(Some(default)),
        Some(Value::None) => Ok(None),
        Some(v) => match v.number() {
            Some(f) if f.is_finite() && f > 0.0 => Ok(Some(f)),
            _ => fail(
                Family::LagLimit,
                format!(
                    "{} must be a number > 0 or None, got {}",
                    key(name),
                    v.repr()
                ),
                HINT,
            ),
        },
    }
}

pub fn lag_limits(router: &Value) -> Result<LagLimits, SettingsError> {
    let max_lag_seconds = positive_seconds(
        "MAX_LAG_SECONDS",
        router.get("MAX_LAG_SECONDS"),
        DEFAULT_MAX_LAG_SECONDS,
    )?;
    let max_lag_bytes = match router.get("MAX_LAG_BYTES") {
        None => Some(DEFAULT_MAX_LAG_BYTES),
        Some(Value::None) => None,
        Some(v) => Some(integer(Family::LagLimit, "MAX_LAG_BYTES", v, 1, i64::MAX)? as u64),
    };
    let lag_ceiling_seconds = positive_seconds(
        "LAG_CEILING_SECONDS",
        router.get("LAG_CEILING_SECONDS"),
        DEFAULT_LAG_CEILING_SECONDS,
    )?;
    if let (Some(ceiling), Some(limit)) = (lag_ceiling_seconds, max_lag_seconds) {
        if ceiling <= limit {
            let shown = |name: &str, default: f64| {
                router
                    .get(name)
                    .map_or_else(|| format!("{default:?} (default)"), Value::repr)
            };
            return fail(
                Family::LagLimit,
                format!(
                    "{} = {} must be greater than {} = {}",
                    key("LAG_CEILING_SECONDS"),
                    shown("LAG_CEILING_SECONDS", DEFAULT_LAG_CEILING_SECONDS),
                    key("MAX_LAG_SECONDS"),
                    shown("MAX_LAG_SECONDS", DEFAULT_MAX_LAG_SECONDS)
                ),
                "The ceiling is how stale reads may get while every replica is over \
                 MAX_LAG_SECONDS; set it above the limit, or None to send those reads \
                 to the primary.",
            );
        }
    }
    Ok(LagLimits {
        max_lag_seconds,
        max_lag_bytes,
        lag_ceiling_seconds,
    })
}
