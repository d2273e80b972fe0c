//! Where each entry of a top-level list (`machines`, `bundles`) starts in the YAML text.
//! yaml_serde reports positions only for parse errors; findings about well-formed files
//! (a duplicate MAC, an unstable disk) need them too, so this walks the text once with
//! yaml-rust2's event parser, which carries a position on every event.

use yaml_rust2::parser::{MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;
use yaml_rust2::Event;

struct Walker<'a> {
    section: &'a str,
    depth: usize,
    expect_key: bool,
    last_key: Option<String>,
    in_section: bool,
    out: Vec<(usize, usize)>,
}

impl MarkedEventReceiver for Walker<'_> {
    fn on_event(&mut self, ev: Event, m: Marker) {
        let item_start = self.in_section && self.depth == 2;
        match ev {
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                if item_start {
                    self.out.push((m.line(), m.col() + 1));
                }
                if self.depth == 1
                    && !self.expect_key
                    && matches!(ev, Event::SequenceStart(..))
                    && self.last_key.as_deref() == Some(self.section)
                {
                    self.in_section = true;
                }
                self.depth += 1;
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.depth = self.depth.saturating_sub(1);
                if self.depth == 1 {
                    self.in_section = false;
                    self.expect_key = true;
                }
            }
            Event::Scalar(..) | Event::Alias(..) if self.depth == 1 => {
                if self.expect_key {
                    self.last_key = match ev {
                        Event::Scalar(v, ..) => Some(v),
                        _ => None,
                    };
                }
                self.expect_key = !self.expect_key;
            }
            Event::Scalar(..) | Event::Alias(..) if item_start => {
                self.out.push((m.line(), m.col() + 1));
            }
            _ => {}
        }
    }
}

/// (line, column), both 1-based, of each entry of the top-level list `section`. Empty
/// when the text does not parse (yaml_serde has reported that already).
pub fn item_positions(text: &str, section: &str) -> Vec<(usize, usize)> {
    let mut w = Walker { section, depth: 0, expect_key: true, last_key: None, in_section: false, out: Vec::new() };
    let mut p = Parser::new_from_str(text);
    if p.load(&mut w, false).is_err() {
        return Vec::new();
    }
    // A block mapping's start event carries the position of its first value; point at
    // the entry's first key (after `- `) instead, where an editor's eye goes.
    let lines: Vec<&str> = text.lines().collect();
    w.out
        .into_iter()
        .map(|(line, col)| match lines.get(line.wrapping_sub(1)) {
            Some(l) if l.trim_start().starts_with("- ") => {
                let dash = l.len() - l.trim_start().len();
                let after = &l[dash + 1..];
                (line, dash + 2 + (after.len() - after.trim_start().len()))
            }
            _ => (line, col),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_block_and_flow_entries() {
        let text = "server:\n  listen: x\nmachines:\n  - name: a\n    macs: [1, 2]\n  - {name: b}\nbundles: [{name: g}]\n";
        assert_eq!(item_positions(text, "machines"), vec![(4, 5), (6, 5)]);
        assert_eq!(item_positions(text, "bundles"), vec![(7, 11)]);
        assert!(item_positions(text, "clusters").is_empty());
        assert!(item_positions("machines: [", "machines").is_empty());
    }
}
