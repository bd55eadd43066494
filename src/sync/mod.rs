//! Process-shared synchronisation. This foundation holds the raw lock word
//! that guards [`Value`](crate::Value) and [`Array`](crate::Array); the full
//! robust lock family builds on the same [`raw`] layer.

pub mod raw;
