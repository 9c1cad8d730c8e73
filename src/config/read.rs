//! Reading the file's shape so that `gateway check` lists every problem at once. serde stops
//! at its first error, so the YAML is parsed into a tree first and typed from the tree; each
//! value serde refuses is reported at its own key's line (from the source map) with what was
//! found and what is accepted, then taken out of the tree, and the tree is typed again: the
//! key falls back to its default and the next problem shows. Load time only.

use serde_path_to_error::Segment;
use serde_yaml::Value;

use super::{ConfigError, file::GatewayConfig, redact_userinfo, source_map::SourceMap};

/// Enough for any file a person writes; a bound, so that a pathological one cannot loop.
const MAX_PROBLEMS: usize = 100;

/// The typed file, and the problems that had to be taken out of it to get there.
pub(super) struct Shape {
    /// `None` when a problem could not be taken out (a required key, a malformed list
    /// item): the file's later problems were not looked for.
    pub config: Option<GatewayConfig>,
    pub errors: Vec<ConfigError>,
    /// YAML paths of the keys taken out (`breakers.default.open_for`): their defaults
    /// stand in, so checks of the rest of their block may be misled.
    pub removed: Vec<String>,
    /// Named entries taken out whole because a required key was missing (`upstreams.users`).
    pub dropped: Vec<String>,
}

impl Shape {
    /// Whether a problem found after typing is only a consequence of a key taken out: it
    /// sits in the same block as that key, or names the entry taken out (`unknown upstream
    /// "users"` after `upstreams.users` went).
    pub fn explains(&self, error: &ConfigError) -> bool {
        let within = |path: &str, block: &str| {
            path == block
                || path.starts_with(&format!("{block}."))
                || path.starts_with(&format!("{block}["))
        };
        let block_of = |path: &str| {
            path.rfind(['.', '['])
                .map_or("", |cut| &path[..cut])
                .to_owned()
        };
        self.removed
            .iter()
            .any(|removed| within(&error.path, &block_of(removed)))
            || self.dropped.iter().any(|dropped| {
                let name = dropped.rsplit('.').next().unwrap_or(dropped);
                within(&error.path, dropped)
                    || error.path == block_of(dropped)
                    || error.message.contains(&format!("\"{name}\""))
            })
    }
}

/// Parse and type `text`. A YAML syntax error is the only problem reported: nothing after it
/// can be read reliably.
pub(super) fn read(text: &str, map: &SourceMap) -> Shape {
    let mut tree: Value = match serde_yaml::from_str(text) {
        Ok(tree) => tree,
        Err(e) => {
            return Shape {
                config: None,
                errors: vec![syntax_error(text, &e)],
                removed: Vec::new(),
                dropped: Vec::new(),
            };
        }
    };
    let mut shape = Shape {
        config: None,
        errors: Vec::new(),
        removed: Vec::new(),
        dropped: Vec::new(),
    };
    while shape.errors.len() < MAX_PROBLEMS {
        let error = match serde_path_to_error::deserialize::<_, GatewayConfig>(tree.clone()) {
            Ok(config) => {
                shape.config = Some(config);
                break;
            }
            Err(error) => error,
        };
        let segments: Vec<Segment> = error.path().iter().cloned().collect();
        let message = error.into_inner().to_string();
        let mut path = join(&segments);
        let mut key = segments.clone();
        let unknown = quoted(&message, "unknown field `");
        if let Some(field) = unknown {
            // Reported at the map that holds it (as serde words it); the line is the key's.
            match segments.last() {
                Some(Segment::Map { key }) if key == field => {
                    path = join(&segments[..segments.len() - 1]);
                }
                _ => key.push(Segment::Map {
                    key: field.to_owned(),
                }),
            }
        } else if let Some(field) = quoted(&message, "missing field `") {
            let missing = join_key(&path, field);
            if !shape.removed.contains(&missing) && !shape.dropped.contains(&missing) {
                shape.errors.push(ConfigError {
                    line: map.line(&path),
                    path: path.clone(),
                    message: format!("missing key `{field}` (it has no default)"),
                });
            }
            // The block cannot be typed without it; a whole named entry (an upstream, a
            // breaker) can be taken out, anything else ends the search.
            if !matches!(segments.last(), Some(Segment::Map { .. })) || segments.len() < 2 {
                break;
            }
            if !remove(&mut tree, &segments) {
                break;
            }
            shape.dropped.push(path);
            continue;
        }
        let key_path = join(&key);
        let line = map.line(&key_path);
        if unknown.is_none() {
            path = key_path;
        }
        // serde echoes the value it refused (`cache: "redis://:pw@host"`): never a password.
        shape.errors.push(ConfigError {
            path,
            line,
            message: redact_userinfo(&humanize(&message)),
        });
        // Take out the nearest whole key (a bad list item takes its list with it).
        let Some(last_key) = key.iter().rposition(|s| matches!(s, Segment::Map { .. })) else {
            break;
        };
        key.truncate(last_key + 1);
        if !remove(&mut tree, &key) {
            break;
        }
        shape.removed.push(join(&key));
    }
    shape
}

/// The word between `prefix` and the next backtick.
fn quoted<'m>(message: &'m str, prefix: &str) -> Option<&'m str> {
    let rest = &message[message.find(prefix)? + prefix.len()..];
    Some(&rest[..rest.find('`')?])
}

fn join(segments: &[Segment]) -> String {
    let mut path = String::new();
    for segment in segments {
        match segment {
            Segment::Seq { index } => path.push_str(&format!("[{index}]")),
            Segment::Map { key } => path = join_key(&path, key),
            Segment::Enum { variant } => path = join_key(&path, variant),
            Segment::Unknown => path = join_key(&path, "?"),
        }
    }
    path
}

fn join_key(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// Remove the map entry at `segments` (which ends with a map key); false when it is not
/// there.
fn remove(tree: &mut Value, segments: &[Segment]) -> bool {
    let Some((Segment::Map { key }, parents)) = segments.split_last() else {
        return false;
    };
    let mut node = tree;
    for segment in parents {
        let next = match (segment, node) {
            (Segment::Map { key }, Value::Mapping(map)) => map.get_mut(key.as_str()),
            (Segment::Seq { index }, Value::Sequence(items)) => items.get_mut(*index),
            _ => None,
        };
        match next {
            Some(next) => node = next,
            None => return false,
        }
    }
    match node {
        Value::Mapping(map) => map.remove(key.as_str()).is_some(),
        _ => false,
    }
}

/// serde's `invalid type: integer `10`, expected a string` in a newcomer's words: what was
/// found, then what is accepted.
fn humanize(message: &str) -> String {
    let Some(rest) = message.strip_prefix("invalid type: ") else {
        return message.to_owned();
    };
    let Some((found, expected)) = rest.split_once(", expected ") else {
        return message.to_owned();
    };
    let found = match found.split_once(' ') {
        Some(("integer" | "floating", value)) => {
            format!(
                "the number {}",
                value.trim_start_matches("point ").trim_matches('`')
            )
        }
        Some(("string", value)) => format!("the text {value}"),
        Some(("boolean", value)) => format!("the boolean {}", value.trim_matches('`')),
        _ => match found {
            "sequence" => "a list".to_owned(),
            "map" => "a block of keys".to_owned(),
            "unit value" => "an empty value".to_owned(),
            other => other.to_owned(),
        },
    };
    let expected = match expected {
        "i64" | "u64" | "i32" | "u32" | "u16" | "usize" => "a whole number, like 5".to_owned(),
        "a string" => "text, like name: users".to_owned(),
        "a sequence" => "a list, like [a, b]".to_owned(),
        "a boolean" => "true or false".to_owned(),
        other if other.starts_with("struct ") || other.starts_with("a map") => {
            "a block of keys (key: value lines, or { key: value })".to_owned()
        }
        other => other.to_owned(),
    };
    format!("found {found}; expected {expected}")
}

/// A YAML syntax error at one location: serde_yaml names two (`at line 7 column 1, while
/// scanning ... at line 6 column 11`); the first is where it stopped. A tab gets its own
/// explanation, at the tab.
fn syntax_error(text: &str, error: &serde_yaml::Error) -> ConfigError {
    let full = redact_userinfo(&error.to_string());
    let what = full.split(" at line ").next().unwrap_or(&full);
    let what = what.split(", while ").next().unwrap_or(what);
    let line = error.location().map(|l| l.line());
    // The tab that broke the scan: the nearest one indenting a line, up to the line where
    // the scanner stopped (a tab between a value and its comment is legal YAML).
    let lines: Vec<&str> = text.lines().collect();
    let tab = line.and_then(|stop| {
        (0..stop.min(lines.len())).rev().find_map(|i| {
            let indent = lines[i].len() - lines[i].trim_start().len();
            lines[i][..indent]
                .find('\t')
                .map(|c| (i + 1, lines[i][..c].chars().count() + 1))
        })
    });
    match tab {
        Some((tab_line, column)) => ConfigError {
            path: String::new(),
            line: Some(tab_line),
            message: format!(
                "a tab character at column {column}: YAML indents with spaces only ({what})"
            ),
        },
        None => ConfigError {
            path: String::new(),
            line,
            message: what.to_owned(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_words_become_what_was_found_and_what_is_accepted() {
        assert_eq!(
            humanize("invalid type: integer `10`, expected i64"),
            "found the number 10; expected a whole number, like 5"
        );
        assert_eq!(
            humanize("invalid type: string \"two\", expected i64"),
            "found the text \"two\"; expected a whole number, like 5"
        );
        assert_eq!(
            humanize("invalid type: map, expected a sequence"),
            "found a block of keys; expected a list, like [a, b]"
        );
        assert_eq!(humanize("unknown variant `x`"), "unknown variant `x`");
    }

    #[test]
    fn a_key_taken_out_explains_its_block_and_what_names_it() {
        let shape = Shape {
            config: None,
            errors: Vec::new(),
            removed: vec!["breakers.default.open_for".to_owned()],
            dropped: vec!["upstreams.users".to_owned()],
        };
        let error = |path: &str, message: &str| ConfigError {
            path: path.to_owned(),
            line: None,
            message: message.to_owned(),
        };
        assert!(shape.explains(&error("routes[0].upstream", "unknown upstream \"users\"")));
        assert!(shape.explains(&error("upstreams.users.backends", "x")));
        assert!(shape.explains(&error("breakers.default.max_open_for", "x")));
        assert!(!shape.explains(&error("upstreams.paths.backends", "x")));
        assert!(!shape.explains(&error("breakers.strict.window", "x")));
        assert!(!shape.explains(&error("routes[0].path", "invalid path \"/a/\"")));
    }
}
