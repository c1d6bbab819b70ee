//! Column types, the [`Col`] table entry, the [`Cell`] a row hands to a writer, and the
//! [`rows!`](crate::rows) macro that declares a row struct and its column table at once, so the
//! two cannot drift apart.

use crate::{Status, Workload};

/// A column's type, as replayer/SCHEMA.md names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Ty {
    /// `UInt32`.
    U32,
    /// `UInt64`.
    U64,
    /// `Int64`.
    I64,
    /// `Float64`.
    F64,
    /// `Boolean`.
    Bool,
    /// `Utf8`.
    Str,
}

impl Ty {
    /// The type's name in SCHEMA.md (Arrow's names).
    pub fn schema_name(self) -> &'static str {
        match self {
            Ty::U32 => "UInt32",
            Ty::U64 => "UInt64",
            Ty::I64 => "Int64",
            Ty::F64 => "Float64",
            Ty::Bool => "Boolean",
            Ty::Str => "Utf8",
        }
    }
}

/// One column of a results file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Col {
    /// Its name.
    pub name: &'static str,
    /// Its type.
    pub ty: Ty,
    /// Whether it may be null.
    pub nullable: bool,
    /// What it holds (the row struct's doc comment of the field).
    pub doc: &'static str,
}

/// One value of a row, in its column's type.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell<'a> {
    /// A null (nullable columns only).
    Null,
    /// `UInt32`.
    U32(u32),
    /// `UInt64`.
    U64(u64),
    /// `Int64`.
    I64(i64),
    /// `Float64`.
    F64(f64),
    /// `Boolean`.
    Bool(bool),
    /// `Utf8`.
    Str(std::borrow::Cow<'a, str>),
}

/// A Rust type that is one column's values.
pub trait ColumnType {
    /// The column's type.
    const TY: Ty;
    /// Whether the column may be null.
    const NULLABLE: bool = false;
    /// The value as a cell.
    fn cell(&self) -> Cell<'_>;
}

macro_rules! plain {
    ($t:ty, $ty:ident) => {
        impl ColumnType for $t {
            const TY: Ty = Ty::$ty;
            fn cell(&self) -> Cell<'_> {
                Cell::$ty(*self)
            }
        }
    };
}
plain!(u32, U32);
plain!(u64, U64);
plain!(i64, I64);
plain!(f64, F64);
plain!(bool, Bool);

impl ColumnType for String {
    const TY: Ty = Ty::Str;
    fn cell(&self) -> Cell<'_> {
        Cell::Str(self.as_str().into())
    }
}

impl ColumnType for Status {
    const TY: Ty = Ty::Str;
    fn cell(&self) -> Cell<'_> {
        Cell::Str(self.name().into())
    }
}

impl ColumnType for Workload {
    const TY: Ty = Ty::Str;
    fn cell(&self) -> Cell<'_> {
        Cell::Str(self.to_string().into())
    }
}

impl<T: ColumnType> ColumnType for Option<T> {
    const TY: Ty = T::TY;
    const NULLABLE: bool = true;
    fn cell(&self) -> Cell<'_> {
        match self {
            Some(v) => v.cell(),
            None => Cell::Null,
        }
    }
}

/// A row of one results file: its column table and its values in that order.
pub trait Row {
    /// The columns, in file order.
    const COLUMNS: &'static [Col];
    /// This row's values, one per column of [`Row::COLUMNS`], in order.
    fn cells(&self) -> Vec<Cell<'_>>;
}

/// Declares a row struct (serde, one field per column, in file order) and implements [`Row`]
/// for it: the column table is made from the fields' names, types and doc comments.
#[macro_export]
macro_rules! rows {
    ($(#[$m:meta])* pub struct $name:ident { $( $(#[doc = $doc:literal])* pub $field:ident : $fty:ty, )* }) => {
        $(#[$m])*
        #[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
        pub struct $name {
            $( $(#[doc = $doc])* pub $field: $fty, )*
        }

        impl $crate::Row for $name {
            const COLUMNS: &'static [$crate::Col] = &[
                $( $crate::Col {
                    name: stringify!($field),
                    ty: <$fty as $crate::ColumnType>::TY,
                    nullable: <$fty as $crate::ColumnType>::NULLABLE,
                    doc: concat!($($doc),*),
                }, )*
            ];
            fn cells(&self) -> Vec<$crate::Cell<'_>> {
                vec![ $( $crate::ColumnType::cell(&self.$field), )* ]
            }
        }
    };
}
