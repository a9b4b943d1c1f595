/// The error codes of ERROR and unauthenticated ERROR frames
/// (`docs/DMCP.md`, "Error codes"). 1xx: the frame; 2xx: authentication
/// and freshness; 3xx: the command was refused by the LB's policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u16)]
#[non_exhaustive]
pub enum ErrorCode {
    BadFrame = 100,
    UnknownType = 101,
    Oversized = 102,
    BadBody = 103,
    UnexpectedType = 104,
    UnknownField = 105,
    UnknownSender = 106,
    UnknownKey = 200,
    BadTag = 201,
    ReplayedKey = 202,
    BadSeq = 203,
    Stale = 204,
    Busy = 205,
    NotPermitted = 300,
    TooManyScopes = 301,
    TooManyFields = 302,
    InvalidScope = 303,
    DuplicateScope = 304,
}

const ALL: [ErrorCode; 18] = [
    ErrorCode::BadFrame,
    ErrorCode::UnknownType,
    ErrorCode::Oversized,
    ErrorCode::BadBody,
    ErrorCode::UnexpectedType,
    ErrorCode::UnknownField,
    ErrorCode::UnknownSender,
    ErrorCode::UnknownKey,
    ErrorCode::BadTag,
    ErrorCode::ReplayedKey,
    ErrorCode::BadSeq,
    ErrorCode::Stale,
    ErrorCode::Busy,
    ErrorCode::NotPermitted,
    ErrorCode::TooManyScopes,
    ErrorCode::TooManyFields,
    ErrorCode::InvalidScope,
    ErrorCode::DuplicateScope,
];

impl ErrorCode {
    /// The code for a number read off the wire, if this version knows it.
    pub fn from_u16(code: u16) -> Option<ErrorCode> {
        ALL.into_iter().find(|c| *c as u16 == code)
    }

    /// The spec's name, e.g. `NOT_PERMITTED`.
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::BadFrame => "BAD_FRAME",
            ErrorCode::UnknownType => "UNKNOWN_TYPE",
            ErrorCode::Oversized => "OVERSIZED",
            ErrorCode::BadBody => "BAD_BODY",
            ErrorCode::UnexpectedType => "UNEXPECTED_TYPE",
            ErrorCode::UnknownField => "UNKNOWN_FIELD",
            ErrorCode::UnknownSender => "UNKNOWN_SENDER",
            ErrorCode::UnknownKey => "UNKNOWN_KEY",
            ErrorCode::BadTag => "BAD_TAG",
            ErrorCode::ReplayedKey => "REPLAYED_KEY",
            ErrorCode::BadSeq => "BAD_SEQ",
            ErrorCode::Stale => "STALE",
            ErrorCode::Busy => "BUSY",
            ErrorCode::NotPermitted => "NOT_PERMITTED",
            ErrorCode::TooManyScopes => "TOO_MANY_SCOPES",
            ErrorCode::TooManyFields => "TOO_MANY_FIELDS",
            ErrorCode::InvalidScope => "INVALID_SCOPE",
            ErrorCode::DuplicateScope => "DUPLICATE_SCOPE",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_unique() {
        for c in ALL {
            assert_eq!(ErrorCode::from_u16(c as u16), Some(c));
        }
        let mut nums: Vec<u16> = ALL.iter().map(|c| *c as u16).collect();
        nums.dedup();
        assert_eq!(nums.len(), ALL.len());
        assert_eq!(ErrorCode::from_u16(999), None);
    }
}
