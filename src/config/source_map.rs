//! Where each YAML path sits in the file, so that semantic errors (found after serde has
//! typed the document) can still name a line. serde_yaml keeps no spans, so the document is
//! walked once more with an event parser; this happens at load time only.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, Parser};

/// Map from a config path such as `routes[2].upstream` to its 1-based line.
#[derive(Debug, Default)]
pub struct SourceMap {
    lines: HashMap<String, usize>,
}

enum Frame {
    Map {
        path: String,
        pending_key: Option<String>,
    },
    Seq {
        path: String,
        next: usize,
    },
}

impl SourceMap {
    /// Best effort: a document that does not scan yields an empty map (serde reports the
    /// syntax error with its own position).
    pub fn parse(text: &str) -> Self {
        let mut map = SourceMap::default();
        let mut parser = Parser::new_from_str(text);
        let mut stack: Vec<Frame> = Vec::new();
        while let Ok((event, marker)) = parser.next_token() {
            let line = marker.line();
            match event {
                Event::StreamEnd => break,
                Event::MappingEnd | Event::SequenceEnd => {
                    stack.pop();
                }
                Event::Scalar(..)
                | Event::Alias(_)
                | Event::MappingStart(..)
                | Event::SequenceStart(..) => {
                    let path = match stack.last_mut() {
                        None => String::new(),
                        Some(Frame::Map { path, pending_key }) => match pending_key.take() {
                            Some(key) => join(path, &key),
                            None => {
                                let key = match &event {
                                    Event::Scalar(key, ..) => key.clone(),
                                    _ => "?".to_owned(),
                                };
                                map.lines.entry(join(path, &key)).or_insert(line);
                                *pending_key = Some(key);
                                if matches!(event, Event::Scalar(..) | Event::Alias(_)) {
                                    continue;
                                }
                                // A complex key: track its structure but record nothing under it.
                                "?".to_owned()
                            }
                        },
                        Some(Frame::Seq { path, next }) => {
                            let item = format!("{path}[{next}]");
                            *next += 1;
                            map.lines.entry(item.clone()).or_insert(line);
                            item
                        }
                    };
                    match event {
                        Event::MappingStart(..) => stack.push(Frame::Map {
                            path,
                            pending_key: None,
                        }),
                        Event::SequenceStart(..) => stack.push(Frame::Seq { path, next: 0 }),
                        _ => {}
                    }
                }
                _ => {}
            }
        }
        map
    }

    /// The line of `path`, or of its nearest ancestor that has one.
    pub fn line(&self, path: &str) -> Option<usize> {
        let mut path = path;
        loop {
            if let Some(line) = self.lines.get(path) {
                return Some(*line);
            }
            let cut = path.rfind(['.', '['])?;
            path = &path[..cut];
        }
    }
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "\
server:
  listen: 0.0.0.0:8888
upstreams:
  users: { backends: [127.0.0.1:8081], breaker: default }
routes:
  - path: /user
    upstream: users
  - { path: /path, upstream: paths }
";

    #[test]
    fn finds_lines_of_nested_keys_and_items() {
        let map = SourceMap::parse(DOC);
        assert_eq!(map.line("server.listen"), Some(2));
        assert_eq!(map.line("upstreams.users.breaker"), Some(4));
        assert_eq!(map.line("upstreams.users.backends[0]"), Some(4));
        assert_eq!(map.line("routes[0].upstream"), Some(7));
        assert_eq!(map.line("routes[1].upstream"), Some(8));
        assert_eq!(map.line("routes[1]"), Some(8));
    }

    #[test]
    fn falls_back_to_the_nearest_ancestor() {
        let map = SourceMap::parse(DOC);
        assert_eq!(map.line("routes[0].methods"), Some(6));
        assert_eq!(map.line("nowhere"), None);
    }

    #[test]
    fn broken_documents_yield_what_was_read() {
        let map = SourceMap::parse("server:\n  listen: [\n");
        assert_eq!(map.line("server"), Some(1));
    }
}
