//! Request ids, generated as etcd's `idutil.Generator` does: the high 16 bits
//! are the low 16 bits of the member id, the low 48 bits start at the current
//! time in milliseconds (shifted left 8) and count up. Ids therefore stay
//! unique across restarts of one member and across members.

/// Generates unique request ids for one member.
#[derive(Debug, Clone)]
pub struct IdGen {
    prefix: u64,
    suffix: u64,
}

const SUFFIX_BITS: u32 = 48;
const COUNT_BITS: u32 = 8;

impl IdGen {
    /// `now_ms` is the wall clock in milliseconds at start (injected).
    pub fn new(member_id: u64, now_ms: u64) -> Self {
        let prefix = (member_id & 0xffff) << SUFFIX_BITS;
        let suffix = (now_ms << COUNT_BITS) & ((1 << SUFFIX_BITS) - 1);
        Self { prefix, suffix }
    }

    /// The next id.
    pub fn next_id(&mut self) -> u64 {
        self.suffix = (self.suffix + 1) & ((1 << SUFFIX_BITS) - 1);
        self.prefix | self.suffix
    }

    /// The member part of every id.
    pub fn prefix(&self) -> u64 {
        self.prefix
    }
}

#[cfg(test)]
mod tests {
    use super::IdGen;

    #[test]
    fn ids_are_unique_and_carry_the_member() {
        let mut ids = IdGen::new(0x8e9e_05c5_2164_694d, 1_700_000_000_000);
        let a = ids.next_id();
        let b = ids.next_id();
        assert_ne!(a, b);
        assert_eq!(a >> 48, 0x694d);
        assert_eq!(b, a + 1);
    }

    #[test]
    fn restart_later_never_repeats_earlier_ids() {
        let mut first = IdGen::new(7, 1_000);
        let last_of_first: Vec<u64> = (0..200).map(|_| first.next_id()).collect();
        let mut second = IdGen::new(7, 2_000);
        let next = second.next_id();
        assert!(last_of_first.iter().all(|id| *id < next));
    }
}
