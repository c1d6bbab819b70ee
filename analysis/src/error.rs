//! The library's error type. Bad input that still lets a report be made is not an error: it is
//! a [`crate::Problem`] listed in the report. An [`Error`] stops the analysis.

use std::path::PathBuf;

/// Why an analysis could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Nothing usable was found in the inputs (no result directory, or every `runs.parquet`
    /// was unreadable). The problems found on the way say why.
    #[error("no usable runs in the inputs:\n{}", .problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    NoRuns {
        /// What was wrong with each input.
        problems: Vec<crate::Problem>,
    },
    /// An argument that is not valid (an unparsable glob pattern).
    #[error("bad argument {arg:?}: {reason}")]
    BadArgument {
        /// The argument as given.
        arg: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Polars failed while computing the tables (not while reading one file: that is a
    /// problem, and the file is skipped).
    #[error("polars: {context}: {source}")]
    Polars {
        /// What was being computed.
        context: String,
        /// Polars' error.
        #[source]
        source: polars::prelude::PolarsError,
    },
    /// Writing an output file failed.
    #[error("writing {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A trace (for a heap map) could not be read.
    #[error("trace {path}: {reason}")]
    Trace {
        /// The trace file.
        path: PathBuf,
        /// What the reader said.
        reason: String,
    },
    /// A heap map's mappings file (`<allocator>.maps.parquet`) could not be used.
    #[error("mappings file {path}: {reason}")]
    Mappings {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Drawing a plot failed.
    #[error("plot {path}: {reason}")]
    Plot {
        /// The image file.
        path: PathBuf,
        /// What plotters said.
        reason: String,
    },
}

impl Error {
    /// True when the error is the user's input (exit status 2), not a failure of the machine.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            Error::NoRuns { .. }
                | Error::BadArgument { .. }
                | Error::Trace { .. }
                | Error::Mappings { .. }
        )
    }
}

/// Attaches a context to a polars error.
pub(crate) trait PolarsContext<T> {
    fn ctx(self, context: impl Into<String>) -> Result<T, Error>;
}

impl<T> PolarsContext<T> for polars::prelude::PolarsResult<T> {
    fn ctx(self, context: impl Into<String>) -> Result<T, Error> {
        self.map_err(|source| Error::Polars {
            context: context.into(),
            source,
        })
    }
}
