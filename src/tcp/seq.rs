//! TCP sequence numbers: 32-bit values compared modulo 2^32 (RFC 1323 §4.2 / RFC 7323 §5.2),
//! so a stream that wraps past 0xffff_ffff still orders correctly.

use std::cmp::Ordering;
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SeqNumber(pub u32);

impl SeqNumber {
    pub fn wrapping_add(self, n: u32) -> SeqNumber {
        SeqNumber(self.0.wrapping_add(n))
    }
    /// Signed distance `self - other`; valid while the two are within 2^31 of each other.
    pub fn diff(self, other: SeqNumber) -> i64 {
        self.0.wrapping_sub(other.0) as i32 as i64
    }
}

impl PartialOrd for SeqNumber {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.diff(*other).cmp(&0))
    }
}

impl fmt::Display for SeqNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_across_wrap() {
        let before = SeqNumber(0xffff_fff0);
        let after = before.wrapping_add(0x20);
        assert_eq!(after, SeqNumber(0x10));
        assert!(before < after);
        assert_eq!(after.diff(before), 0x20);
        assert_eq!(before.diff(after), -0x20);
    }
}
