//! The alloclab trace format.
