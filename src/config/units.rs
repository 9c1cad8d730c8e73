//! Value types of the config file that are friendlier than raw numbers: durations such as
//! `10s` or `250ms`, rates such as `50%`, and thresholds that can be switched `off`.

use std::{fmt, time::Duration};

use serde::{Deserialize, Deserializer, de};

/// A duration written the human way: `500ms`, `10s`, `5m`, `1h 30m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        humantime::parse_duration(text.trim())
            .map(HumanDuration)
            .map_err(|e| {
                de::Error::custom(format!(
                    "invalid duration {text:?} ({e}); write it like 500ms, 10s or 5m"
                ))
            })
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

/// A share written as a percentage, `50%` or `12.5%`, held as a fraction (0.5, 0.125).
/// Range checks belong to validation, which knows the key's meaning.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Percent(pub f64);

impl<'de> Deserialize<'de> for Percent {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PercentVisitor;
        impl de::Visitor<'_> for PercentVisitor {
            type Value = Percent;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a percentage like 50%")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Percent, E> {
                parse_percent(text).map(Percent).ok_or_else(|| {
                    E::custom(format!(
                        "invalid rate {text:?}; write it as a percentage like 50%"
                    ))
                })
            }
            fn visit_f64<E: de::Error>(self, value: f64) -> Result<Percent, E> {
                Err(E::custom(format!(
                    "invalid rate {value}; write it as a percentage like 50%"
                )))
            }
            fn visit_i64<E: de::Error>(self, value: i64) -> Result<Percent, E> {
                self.visit_f64(value as f64)
            }
            fn visit_u64<E: de::Error>(self, value: u64) -> Result<Percent, E> {
                self.visit_f64(value as f64)
            }
        }
        deserializer.deserialize_any(PercentVisitor)
    }
}

fn parse_percent(text: &str) -> Option<f64> {
    let number = text.trim().strip_suffix('%')?.trim_end();
    let value: f64 = number.parse().ok()?;
    value.is_finite().then_some(value / 100.0)
}

/// A size in bytes: a plain number, or with a unit: `512KiB`, `64MiB`, `1GiB` (also `KB`,
/// `MB`, `GB` as powers of 1000).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SizeVisitor;
        impl de::Visitor<'_> for SizeVisitor {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size like 65536, 512KiB or 64MiB")
            }
            fn visit_u64<E: de::Error>(self, value: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(value))
            }
            fn visit_i64<E: de::Error>(self, value: i64) -> Result<ByteSize, E> {
                u64::try_from(value)
                    .map(ByteSize)
                    .map_err(|_| E::custom(format!("invalid size {value}: must not be negative")))
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<ByteSize, E> {
                parse_size(text).map(ByteSize).ok_or_else(|| {
                    E::custom(format!(
                        "invalid size {text:?}; write it like 65536, 512KiB or 64MiB"
                    ))
                })
            }
        }
        deserializer.deserialize_any(SizeVisitor)
    }
}

fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return None,
    };
    number.checked_mul(factor)
}

/// A trip threshold that may be disabled with `off`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Switch<T> {
    Off,
    On(T),
}

impl<T> Switch<T> {
    pub fn into_option(self) -> Option<T> {
        match self {
            Switch::Off => None,
            Switch::On(value) => Some(value),
        }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Switch<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw<T> {
            Value(T),
            Word(String),
        }
        match Raw::<T>::deserialize(deserializer)? {
            Raw::Value(value) => Ok(Switch::On(value)),
            Raw::Word(word) if word.trim() == "off" => Ok(Switch::Off),
            Raw::Word(word) => Err(de::Error::custom(format!(
                "invalid value {word:?}; expected a threshold or `off`"
            ))),
        }
    }
}

/// A setting that is `on` or `off` (YAML booleans are accepted too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OnOff(pub bool);

impl<'de> Deserialize<'de> for OnOff {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bool(bool),
            Word(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Bool(value) => Ok(OnOff(value)),
            Raw::Word(word) => match word.trim() {
                "on" => Ok(OnOff(true)),
                "off" => Ok(OnOff(false)),
                _ => Err(de::Error::custom(format!(
                    "invalid value {word:?}; expected `on` or `off`"
                ))),
            },
        }
    }
}

/// A rate written `N/period`: `100/s`, `20/m`, `5/10s`, `1000/1h`. Range checks belong to
/// validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u64,
    pub per: Duration,
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        parse_rate(&text).ok_or_else(|| {
            de::Error::custom(format!(
                "invalid rate {text:?}; write it as a count per period like 100/s, 20/m or 5/10s"
            ))
        })
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.count, humantime::format_duration(self.per))
    }
}

fn parse_rate(text: &str) -> Option<Rate> {
    let (count, per) = text.trim().split_once('/')?;
    let count: u64 = count.trim().parse().ok()?;
    let per = match per.trim() {
        "s" => Duration::from_secs(1),
        "m" => Duration::from_secs(60),
        "h" => Duration::from_secs(3600),
        other => humantime::parse_duration(other).ok()?,
    };
    Some(Rate { count, per })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Doc {
        d: HumanDuration,
        p: Percent,
        n: Switch<i64>,
        r: Switch<Percent>,
    }

    fn doc(yaml: &str) -> Result<Doc, serde_yaml::Error> {
        serde_yaml::from_str(yaml)
    }

    #[test]
    fn parses_rates() {
        let rate = |t: &str| parse_rate(t);
        assert_eq!(
            rate("100/s"),
            Some(Rate {
                count: 100,
                per: Duration::from_secs(1)
            })
        );
        assert_eq!(
            rate(" 5 / 10s ").map(|r| r.per),
            Some(Duration::from_secs(10))
        );
        assert_eq!(rate("20/m").map(|r| r.per), Some(Duration::from_secs(60)));
        assert_eq!(rate("100"), None);
        assert_eq!(rate("x/s"), None);
        assert_eq!(rate("1/fortnight"), None);
    }

    #[test]
    fn parses_human_units() {
        let d = doc("{ d: 1m 30s, p: 12.5%, n: 5, r: off }").unwrap();
        assert_eq!(d.d.0, Duration::from_secs(90));
        assert_eq!(d.p.0, 0.125);
        assert_eq!(d.n, Switch::On(5));
        assert_eq!(d.r, Switch::Off);
        let d = doc("{ d: 250ms, p: 100%, n: off, r: 50% }").unwrap();
        assert_eq!(d.d.0, Duration::from_millis(250));
        assert_eq!(d.r, Switch::On(Percent(0.5)));
    }

    #[test]
    fn parses_sizes() {
        assert_eq!(parse_size("64MiB"), Some(64 << 20));
        assert_eq!(parse_size("512 KiB"), Some(512 << 10));
        assert_eq!(parse_size("2MB"), Some(2_000_000));
        assert_eq!(parse_size("100"), Some(100));
        assert_eq!(parse_size("1.5MiB"), None);
        assert_eq!(parse_size("lots"), None);
        let size: ByteSize = serde_yaml::from_str("4096").unwrap();
        assert_eq!(size, ByteSize(4096));
        assert!(serde_yaml::from_str::<ByteSize>("-1").is_err());
    }

    #[test]
    fn parses_on_and_off() {
        for (text, value) in [
            ("on", true),
            ("off", false),
            ("true", true),
            ("false", false),
        ] {
            assert_eq!(serde_yaml::from_str::<OnOff>(text).unwrap(), OnOff(value));
        }
        let e = serde_yaml::from_str::<OnOff>("sometimes").err().unwrap();
        assert!(e.to_string().contains("`on` or `off`"), "{e}");
    }

    #[test]
    fn rejects_malformed_units_with_the_offending_text() {
        let e = doc("{ d: 10 seconds please, p: 1%, n: 1, r: off }")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("invalid duration"), "{e}");
        let e = doc("{ d: 1s, p: 0.5, n: 1, r: off }")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("percentage"), "{e}");
        let e = doc("{ d: 1s, p: 5%, n: sometimes, r: off }")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("off"), "{e}");
    }
}
