//! Non-fatal problems found while analysing, collected for the report.
//!
//! A damaged capture can produce the same complaint thousands of times; each kind keeps
//! its first few messages and a count, so the report stays readable and memory bounded.

use serde::Serialize;

/// Messages kept per kind; the rest are counted.
const KEEP_PER_KIND: usize = 10;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Warning {
    pub kind: String,
    pub message: String,
}

#[derive(Clone, Debug, Default)]
pub struct Warnings {
    kept: Vec<Warning>,
    /// (kind, total occurrences) in first-seen order.
    counts: Vec<(String, u64)>,
}

impl Warnings {
    pub fn push(&mut self, kind: &str, message: impl Into<String>) {
        let count = match self.counts.iter_mut().find(|(k, _)| k == kind) {
            Some((_, n)) => {
                *n += 1;
                *n
            }
            None => {
                self.counts.push((kind.to_string(), 1));
                1
            }
        };
        if count as usize <= KEEP_PER_KIND {
            self.kept.push(Warning {
                kind: kind.to_string(),
                message: message.into(),
            });
        }
    }

    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().map(|(_, n)| n).sum()
    }

    /// The kept warnings, plus one summary line per kind whose messages were cut.
    pub fn into_list(self) -> Vec<Warning> {
        let mut list = self.kept;
        for (kind, n) in self.counts {
            if n as usize > KEEP_PER_KIND {
                list.push(Warning {
                    message: format!(
                        "{} more warnings of kind {kind} were not listed",
                        n as usize - KEEP_PER_KIND
                    ),
                    kind,
                });
            }
        }
        list
    }

    pub fn merge(&mut self, other: Warnings) {
        for w in other.kept {
            self.push(&w.kind, w.message);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floods_are_summarised() {
        let mut w = Warnings::default();
        for i in 0..25 {
            w.push("malformed-message", format!("message {i}"));
        }
        w.push("truncated-file", "cut");
        assert_eq!(w.total(), 26);
        let list = w.into_list();
        assert_eq!(list.len(), KEEP_PER_KIND + 1 + 1);
        assert!(list.last().unwrap().message.starts_with("15 more"));
    }
}
