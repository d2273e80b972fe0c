//! YAML into a tree that remembers where every node was, so every report can say
//! `line L col C` as Butane does. Built from yaml-rust2's event parser (anchors and
//! aliases resolved); scalars stay text with their style, because Butane's decoder
//! (yaml.v3) decides their type from the field they land in. Alias expansion is budgeted
//! ([`MAX_NODES`]): a "billion laughs" document is an error, not an allocation failure.

use yaml_rust2::parser::{MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};
use yaml_rust2::Event;

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Map(Vec<(String, Pos, Node)>),
    Seq(Vec<Node>),
    /// Text and whether it was plain (unquoted): only plain scalars can be null,
    /// numbers or booleans.
    Scalar(String, bool),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    pub pos: Pos,
}

impl Node {
    pub fn is_null(&self) -> bool {
        matches!(&self.value, Value::Scalar(s, true) if matches!(s.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Value::Map(m) => m.iter().find(|(k, _, _)| k == key).map(|(_, _, v)| v),
            _ => None,
        }
    }
    /// yaml.v3's name for the node's kind, for type errors.
    pub fn tag(&self) -> &'static str {
        match &self.value {
            Value::Map(_) => "!!map",
            Value::Seq(_) => "!!seq",
            Value::Scalar(s, plain) => {
                if !plain {
                    "!!str"
                } else if self.is_null() {
                    "!!null"
                } else if parse_bool(s).is_some() && matches!(s.as_str(), "true" | "false" | "True" | "False" | "TRUE" | "FALSE") {
                    "!!bool"
                } else if parse_int(s).is_some() {
                    "!!int"
                } else if s.parse::<f64>().is_ok() {
                    "!!float"
                } else {
                    "!!str"
                }
            }
        }
    }
}

/// Integers as yaml.v3 reads them into an int field: decimal, 0x, 0o, 0b, and a
/// leading-zero octal (YAML 1.1), which is how `mode: 0644` means 420.
pub fn parse_int(s: &str) -> Option<i64> {
    let t = s.replace('_', "");
    let (neg, t) = match t.strip_prefix('-') {
        Some(r) => (true, r.to_string()),
        None => (false, t.trim_start_matches('+').to_string()),
    };
    let v = if let Some(h) = t.strip_prefix("0x") {
        i64::from_str_radix(h, 16).ok()?
    } else if let Some(o) = t.strip_prefix("0o") {
        i64::from_str_radix(o, 8).ok()?
    } else if let Some(b) = t.strip_prefix("0b") {
        i64::from_str_radix(b, 2).ok()?
    } else if t.len() > 1 && t.starts_with('0') && t.bytes().all(|c| c.is_ascii_digit()) {
        i64::from_str_radix(&t[1..], 8).ok()?
    } else if !t.is_empty() && t.bytes().all(|c| c.is_ascii_digit()) {
        t.parse().ok()?
    } else {
        return None;
    };
    Some(if neg { -v } else { v })
}

pub fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "true" | "True" | "TRUE" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" | "y" | "Y" => Some(true),
        "false" | "False" | "FALSE" | "no" | "No" | "NO" | "off" | "Off" | "OFF" | "n" | "N" => Some(false),
        _ => None,
    }
}

/// Nodes a document may expand to, aliases included. Butane configs have hundreds.
pub const MAX_NODES: usize = 100_000;

/// Nodes in `n`, itself included.
fn size(n: &Node) -> usize {
    1 + match &n.value {
        Value::Map(m) => m.iter().map(|(_, _, v)| size(v)).sum(),
        Value::Seq(items) => items.iter().map(size).sum(),
        Value::Scalar(..) => 0,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    pub message: String,
}

enum Frame {
    Map(Vec<(String, Pos, Node)>, Option<(String, Pos)>, Pos, usize),
    Seq(Vec<Node>, Pos, usize),
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    /// Each anchored node with its size.
    anchors: std::collections::HashMap<usize, (Node, usize)>,
    root: Option<Node>,
    error: Option<String>,
    docs: usize,
    /// Nodes built so far, aliases counted at their full size.
    nodes: usize,
}

impl Builder {
    fn push(&mut self, node: Node, anchor: usize) {
        if anchor > 0 {
            let n = size(&node);
            self.anchors.insert(anchor, (node.clone(), n));
        }
        match self.stack.last_mut() {
            None => {
                if self.root.is_none() {
                    self.root = Some(node);
                }
            }
            Some(Frame::Seq(items, _, _)) => items.push(node),
            Some(Frame::Map(entries, pending, _, _)) => match pending.take() {
                None => {
                    let key = match &node.value {
                        Value::Scalar(s, _) => s.clone(),
                        _ => {
                            self.error.get_or_insert(format!("line {}: only scalar mapping keys are supported", node.pos.line));
                            String::new()
                        }
                    };
                    if entries.iter().any(|(k, _, _)| *k == key) {
                        let prev = entries.iter().find(|(k, _, _)| *k == key).map(|(_, p, _)| p.line).unwrap_or(0);
                        self.error.get_or_insert(format!(
                            "yaml: unmarshal errors:\n  line {}: mapping key \"{key}\" already defined at line {prev}",
                            node.pos.line
                        ));
                    }
                    *pending = Some((key, node.pos));
                }
                Some((k, kp)) => entries.push((k, kp, node)),
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, m: Marker) {
        let pos = Pos { line: m.line(), col: m.col() + 1 };
        match ev {
            Event::DocumentStart => self.docs += 1,
            // Once in error, nothing more is built (an alias bomb stops here).
            _ if self.error.is_some() => {}
            Event::Scalar(v, style, anchor, _) => {
                self.nodes += 1;
                let plain = matches!(style, TScalarStyle::Plain);
                self.push(Node { value: Value::Scalar(v, plain), pos }, anchor);
            }
            Event::SequenceStart(anchor, _) => {
                self.nodes += 1;
                self.stack.push(Frame::Seq(Vec::new(), pos, anchor))
            }
            Event::MappingStart(anchor, _) => {
                self.nodes += 1;
                self.stack.push(Frame::Map(Vec::new(), None, pos, anchor))
            }
            Event::SequenceEnd => {
                if let Some(Frame::Seq(items, p, anchor)) = self.stack.pop() {
                    self.push(Node { value: Value::Seq(items), pos: p }, anchor);
                }
            }
            Event::MappingEnd => {
                if let Some(Frame::Map(entries, _, p, anchor)) = self.stack.pop() {
                    self.push(Node { value: Value::Map(entries), pos: p }, anchor);
                }
            }
            Event::Alias(id) => match self.anchors.get(&id) {
                Some((_, n)) if self.nodes + n > MAX_NODES => {
                    self.error.get_or_insert(format!(
                        "line {}: aliases expand this document past {MAX_NODES} nodes; refused (an alias bomb?)",
                        pos.line
                    ));
                }
                Some((node, n)) => {
                    self.nodes += n;
                    let node = node.clone();
                    self.push(Node { pos, ..node }, 0)
                }
                None => {
                    self.error.get_or_insert(format!("line {}: unknown anchor", pos.line));
                }
            },
            _ => {}
        }
    }
}

/// Parses one YAML document. An empty document is an empty map.
pub fn parse(text: &str) -> Result<Node, YamlError> {
    let mut b = Builder::default();
    let mut p = Parser::new_from_str(text);
    if let Err(e) = p.load(&mut b, false) {
        let m = e.marker();
        return Err(YamlError { message: format!("yaml: line {}: {}", m.line(), e.info()) });
    }
    if let Some(e) = b.error {
        return Err(YamlError { message: e });
    }
    Ok(b.root.filter(|r| !r.is_null()).unwrap_or(Node { value: Value::Map(Vec::new()), pos: Pos { line: 1, col: 1 } }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_and_types() {
        let n = parse("a: 1\nb:\n  - x\n  - \"0644\"\nc: &x {d: 0644}\ne: *x\n").unwrap();
        assert_eq!(n.get("a").unwrap().pos, Pos { line: 1, col: 4 });
        let Value::Seq(items) = &n.get("b").unwrap().value else { panic!() };
        assert_eq!(items[1].tag(), "!!str");
        assert_eq!(n.get("e").unwrap().get("d").unwrap().value, Value::Scalar("0644".into(), true));
        assert_eq!(parse_int("0644"), Some(420));
        assert_eq!(parse_int("644"), Some(644));
        assert_eq!(parse_int("0o755"), Some(493));
        assert!(parse("a: 1\na: 2\n").unwrap_err().message.contains("already defined"));
        assert!(parse("a: [\n").is_err());
        assert_eq!(parse("").unwrap().value, Value::Map(vec![]));
    }

    #[test]
    fn an_alias_bomb_is_an_error_not_an_allocation() {
        let mut doc = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let p = i - 1;
            doc += &format!("a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n");
        }
        let err = parse(&doc).unwrap_err().message;
        assert!(err.contains("alias bomb"), "{err}");
        // Modest reuse is fine.
        assert!(parse("a: &a [1, 2]\nb: [*a, *a, *a]\n").is_ok());
    }
}
