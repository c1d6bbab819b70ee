//! OS memory calls (format 1.2): `mmap`, `munmap`, `mremap`, `brk`/`sbrk` and `madvise`, as
//! the recorder records them (`record --os-calls`) and the replayer counts them. This module is
//! the one definition of the calls and of the advice names; [`crate::Event::Os`] carries one
//! call.

/// Which OS memory call an [`crate::Event::Os`] is. The discriminant is the call's code in the
/// trace (the low nibble of its op byte, see FORMAT.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum OsCall {
    Mmap = 0,
    Munmap = 1,
    Mremap = 2,
    /// `brk` and `sbrk` (both move the program break).
    Brk = 3,
    Madvise = 4,
}

impl OsCall {
    /// Number of calls.
    pub const COUNT: usize = 5;

    /// Every call, in code order.
    pub const ALL: [OsCall; OsCall::COUNT] = [
        OsCall::Mmap,
        OsCall::Munmap,
        OsCall::Mremap,
        OsCall::Brk,
        OsCall::Madvise,
    ];

    /// The libc name (`brk` stands for `brk` and `sbrk`).
    pub fn name(self) -> &'static str {
        match self {
            OsCall::Mmap => "mmap",
            OsCall::Munmap => "munmap",
            OsCall::Mremap => "mremap",
            OsCall::Brk => "brk",
            OsCall::Madvise => "madvise",
        }
    }

    /// The call with code `code`, if any.
    pub fn from_code(code: u8) -> Option<OsCall> {
        OsCall::ALL.get(code as usize).copied()
    }
}

/// The name of an `MADV_*` value, lowercase without the prefix (`advice<N>` for values without
/// a name).
pub fn advice_name(a: u32) -> String {
    let name = match a as i32 {
        libc::MADV_NORMAL => "normal",
        libc::MADV_RANDOM => "random",
        libc::MADV_SEQUENTIAL => "sequential",
        libc::MADV_WILLNEED => "willneed",
        libc::MADV_DONTNEED => "dontneed",
        libc::MADV_FREE => "free",
        libc::MADV_REMOVE => "remove",
        libc::MADV_DONTFORK => "dontfork",
        libc::MADV_DOFORK => "dofork",
        libc::MADV_MERGEABLE => "mergeable",
        libc::MADV_UNMERGEABLE => "unmergeable",
        libc::MADV_HUGEPAGE => "hugepage",
        libc::MADV_NOHUGEPAGE => "nohugepage",
        libc::MADV_DONTDUMP => "dontdump",
        libc::MADV_DODUMP => "dodump",
        libc::MADV_WIPEONFORK => "wipeonfork",
        libc::MADV_KEEPONFORK => "keeponfork",
        libc::MADV_HWPOISON => "hwpoison",
        20 => "cold",
        21 => "pageout",
        22 => "populate_read",
        23 => "populate_write",
        24 => "dontneed_locked",
        25 => "collapse",
        _ => return format!("advice{a}"),
    };
    name.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_names_and_advice() {
        for (i, c) in OsCall::ALL.iter().enumerate() {
            assert_eq!(*c as usize, i);
            assert_eq!(OsCall::from_code(i as u8), Some(*c));
        }
        assert_eq!(OsCall::from_code(5), None);
        assert_eq!(advice_name(libc::MADV_DONTNEED as u32), "dontneed");
        assert_eq!(advice_name(8), "free");
        assert_eq!(advice_name(99), "advice99");
    }
}
