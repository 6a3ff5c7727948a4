//! What the FlatBuffers body codecs share.

/// A body from the network failed FlatBuffers verification or is inconsistent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} body: {reason}")]
pub struct BodyError {
    /// Which body was being decoded.
    pub what: &'static str,
    /// Why it was refused.
    pub reason: String,
}

impl BodyError {
    pub fn new(what: &'static str, reason: impl std::fmt::Display) -> BodyError {
        BodyError {
            what,
            reason: reason.to_string(),
        }
    }
}

/// Copies an optional FlatBuffers `[uint]` vector into a `Vec<u32>`.
pub fn u32_list(v: Option<flatbuffers::Vector<'_, u32>>) -> Vec<u32> {
    v.map(|v| v.iter().collect()).unwrap_or_default()
}
