//! Queue algorithm cores: state only, no OS calls but through
//! [`Waiter`](crate::sync::raw::futex::Waiter), no mappings, so loom can
//! model them on heap memory.

pub mod eventcount;
pub mod mpmc;
pub mod spsc;
