//! Value types of the config file that are friendlier than raw numbers: durations such as
//! `10s` or `250ms`, rates such as `50%`, and thresholds that can be switched `off`.

use std::{fmt, time::Duration};

use serde::{Deserialize, Deserializer, de};

/// A duration written the human way: `500ms`, `10s`, `5m`, `1h 30m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

/// What a duration looks like, for every message about one.
const DURATION_FORM: &str = "a duration with its unit, like 500ms, 10s or 5m";

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DurationVisitor;
        impl de::Visitor<'_> for DurationVisitor {
            type Value = HumanDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(DURATION_FORM)
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<HumanDuration, E> {
                humantime::parse_duration(text.trim())
                    .map(HumanDuration)
                    .map_err(|e| {
                        E::custom(format!(
                            "invalid duration {text:?} ({e}); write {DURATION_FORM}"
                        ))
                    })
            }
            fn visit_u64<E: de::Error>(self, value: u64) -> Result<HumanDuration, E> {
                Err(E::custom(format!(
                    "found {value}, a number without a unit; write {DURATION_FORM} \
                     ({value}s if seconds are meant)"
                )))
            }
            fn visit_i64<E: de::Error>(self, value: i64) -> Result<HumanDuration, E> {
                Err(E::custom(format!(
                    "found {value}, a number without a unit; write {DURATION_FORM}"
                )))
            }
            fn visit_f64<E: de::Error>(self, value: f64) -> Result<HumanDuration, E> {
                Err(E::custom(format!(
                    "found {value}, a number without a unit; write {DURATION_FORM} \
                     (fractions in a smaller unit: 1500ms)"
                )))
            }
        }
        deserializer.deserialize_any(DurationVisitor)
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
        match deserializer.deserialize_any(ScalarVisitor::<Percent>::new(false))? {
            Switch::On(percent) => Ok(percent),
            Switch::Off => Err(de::Error::custom("`off` is not accepted here")),
        }
    }
}

/// A value written as one YAML scalar whose messages say what was found and what form is
/// accepted (the shared visitor of [`Percent`] and of [`Switch`]).
pub trait Scalar: Sized {
    /// The accepted form, with an example: `a percentage like 50%`.
    const FORM: &'static str;
    /// `form` is the accepted form the message names (`FORM`, or more: `..., or off`).
    fn from_text(text: &str, form: &str) -> Result<Self, String>;
    fn from_number(value: f64, written: &str, form: &str) -> Result<Self, String>;
}

impl Scalar for Percent {
    const FORM: &'static str = "a percentage like 50%";
    fn from_text(text: &str, form: &str) -> Result<Self, String> {
        parse_percent(text)
            .map(Percent)
            .ok_or_else(|| format!("found {text:?}; write {form}"))
    }
    fn from_number(value: f64, written: &str, form: &str) -> Result<Self, String> {
        let hint = if value > 0.0 && value <= 1.0 {
            format!(" ({}% is a share of {written})", value * 100.0)
        } else {
            String::new()
        };
        Err(format!(
            "found {written}, a plain number; write {form}{hint}"
        ))
    }
}

impl Scalar for i64 {
    const FORM: &'static str = "a whole number like 5";
    fn from_text(text: &str, form: &str) -> Result<Self, String> {
        Err(format!("found {text:?}; write {form}"))
    }
    fn from_number(value: f64, written: &str, form: &str) -> Result<Self, String> {
        if value.fract() == 0.0 && value.abs() < 9.0e15 {
            // Exact: the magnitude is below 2^53.
            #[allow(clippy::cast_possible_truncation)]
            Ok(value as i64)
        } else {
            Err(format!("found {written}; write {form}"))
        }
    }
}

/// Visits one scalar of type `T`; `or_off` also accepts `off` (a [`Switch`]).
struct ScalarVisitor<T> {
    or_off: bool,
    value: std::marker::PhantomData<T>,
}

impl<T> ScalarVisitor<T> {
    fn new(or_off: bool) -> Self {
        ScalarVisitor {
            or_off,
            value: std::marker::PhantomData,
        }
    }
}

impl<T: Scalar> ScalarVisitor<T> {
    fn form(&self) -> String {
        if self.or_off {
            format!("{}, or off", T::FORM)
        } else {
            T::FORM.to_owned()
        }
    }
}

impl<T: Scalar> de::Visitor<'_> for ScalarVisitor<T> {
    type Value = Switch<T>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.form())
    }
    fn visit_str<E: de::Error>(self, text: &str) -> Result<Switch<T>, E> {
        if self.or_off && text.trim() == "off" {
            return Ok(Switch::Off);
        }
        T::from_text(text, &self.form())
            .map(Switch::On)
            .map_err(E::custom)
    }
    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Switch<T>, E> {
        T::from_number(value, &value.to_string(), &self.form())
            .map(Switch::On)
            .map_err(E::custom)
    }
    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Switch<T>, E> {
        #[allow(clippy::cast_precision_loss)]
        T::from_number(value as f64, &value.to_string(), &self.form())
            .map(Switch::On)
            .map_err(E::custom)
    }
    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Switch<T>, E> {
        #[allow(clippy::cast_precision_loss)]
        T::from_number(value as f64, &value.to_string(), &self.form())
            .map(Switch::On)
            .map_err(E::custom)
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

impl<'de, T: Scalar> Deserialize<'de> for Switch<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ScalarVisitor::<T>::new(true))
    }
}

/// A setting that is `on` or `off` (YAML booleans are accepted too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OnOff(pub bool);

impl<'de> Deserialize<'de> for OnOff {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // A visitor, not an untagged enum: a wrong value then says what was found.
        struct OnOffVisitor;
        impl de::Visitor<'_> for OnOffVisitor {
            type Value = OnOff;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("on or off")
            }
            fn visit_bool<E: de::Error>(self, value: bool) -> Result<OnOff, E> {
                Ok(OnOff(value))
            }
            fn visit_str<E: de::Error>(self, word: &str) -> Result<OnOff, E> {
                match word.trim() {
                    "on" => Ok(OnOff(true)),
                    "off" => Ok(OnOff(false)),
                    _ => Err(E::custom(format!(
                        "invalid value {word:?}; expected `on` or `off`"
                    ))),
                }
            }
        }
        deserializer.deserialize_any(OnOffVisitor)
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

impl Scalar for Rate {
    const FORM: &'static str = "a count per period like 100/s, 20/m or 5/10s";
    fn from_text(text: &str, form: &str) -> Result<Self, String> {
        parse_rate(text).ok_or_else(|| format!("found {text:?}; write {form}"))
    }
    fn from_number(_value: f64, written: &str, form: &str) -> Result<Self, String> {
        Err(format!("found {written}, a plain number; write {form}"))
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
