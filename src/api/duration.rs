//! Durations written the way people write them in manifests: `90d`, `24h`, `30m`, `45s`.
//!
//! One unit per value keeps the CEL rules that compare durations (rotation overlap
//! shorter than the period) simple enough for the apiserver's cost budget.

use std::{fmt, str::FromStr, time::Duration};

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Regex every duration in a manifest matches.
pub const DURATION_PATTERN: &str = r"^[1-9][0-9]{0,5}(s|m|h|d)$";

/// CEL expression that converts the duration string `x` into seconds. The
/// cross-field rules spell it out (an attribute takes a literal); a test checks
/// that they spell it this way.
#[cfg(test)]
pub(crate) fn cel_seconds(x: &str) -> String {
    format!(
        "(int({x}.substring(0, {x}.size() - 1)) * ({x}.endsWith('d') ? 86400 : {x}.endsWith('h') ? 3600 : {x}.endsWith('m') ? 60 : 1))"
    )
}

/// A positive duration with one unit (`s`, `m`, `h` or `d`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DurationSpec {
    amount: u32,
    unit: Unit,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Unit {
    Seconds,
    Minutes,
    Hours,
    Days,
}

impl Unit {
    fn seconds(self) -> u64 {
        match self {
            Unit::Seconds => 1,
            Unit::Minutes => 60,
            Unit::Hours => 3600,
            Unit::Days => 86_400,
        }
    }
    fn suffix(self) -> char {
        match self {
            Unit::Seconds => 's',
            Unit::Minutes => 'm',
            Unit::Hours => 'h',
            Unit::Days => 'd',
        }
    }
}

impl DurationSpec {
    pub const fn hours(amount: u32) -> Self {
        Self {
            amount,
            unit: Unit::Hours,
        }
    }
    pub const fn days(amount: u32) -> Self {
        Self {
            amount,
            unit: Unit::Days,
        }
    }
    pub fn as_duration(self) -> Duration {
        Duration::from_secs(self.as_secs())
    }
    pub fn as_secs(self) -> u64 {
        u64::from(self.amount) * self.unit.seconds()
    }
}

/// Why a duration string was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "invalid duration {0:?}: expected a positive whole number and one unit (s, m, h or d), such as 90d, 24h or 30m"
)]
pub struct InvalidDuration(String);

impl FromStr for DurationSpec {
    type Err = InvalidDuration;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || InvalidDuration(s.to_string());
        let unit = match s.chars().last() {
            Some('s') => Unit::Seconds,
            Some('m') => Unit::Minutes,
            Some('h') => Unit::Hours,
            Some('d') => Unit::Days,
            _ => return Err(invalid()),
        };
        let digits = &s[..s.len() - 1];
        if digits.is_empty() || digits.len() > 6 || digits.starts_with('0') {
            return Err(invalid());
        }
        let amount = digits.parse::<u32>().map_err(|_| invalid())?;
        Ok(Self { amount, unit })
    }
}

impl fmt::Display for DurationSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.amount, self.unit.suffix())
    }
}

impl Serialize for DurationSpec {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DurationSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for DurationSpec {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": DURATION_PATTERN,
            "maxLength": 7,
            "description": "A duration with one unit: s, m, h or d (for example 90d, 24h, 30m)."
        })
    }
    fn inline_schema() -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_units_people_write() {
        assert_eq!(
            "90d".parse::<DurationSpec>().unwrap().as_secs(),
            90 * 86_400
        );
        assert_eq!("24h".parse::<DurationSpec>().unwrap().as_secs(), 86_400);
        assert_eq!("30m".parse::<DurationSpec>().unwrap().as_secs(), 1_800);
        assert_eq!("45s".parse::<DurationSpec>().unwrap().as_secs(), 45);
        assert_eq!("90d".parse::<DurationSpec>().unwrap().to_string(), "90d");
    }

    #[test]
    fn refuses_what_the_schema_refuses() {
        let re = regex::Regex::new(DURATION_PATTERN).unwrap();
        for bad in [
            "", "d", "0d", "07h", "1.5h", "1h30m", "-1d", "10w", "1234567s", "h1",
        ] {
            assert!(bad.parse::<DurationSpec>().is_err(), "{bad} was accepted");
            assert!(!re.is_match(bad), "schema pattern accepts {bad}");
        }
    }
}
