//! Inline-button callback data: one typed, versioned encoding (`v1:<kind>:<arg>`), parsed in
//! this one place. Telegram limits callback data to 64 bytes; every value here fits.

use std::fmt;

/// The only version this build writes; older or newer buttons are refused with a clear message.
pub const VERSION: &str = "v1";

/// Telegram's limit on `callback_data`.
pub const MAX_LEN: usize = 64;

/// What a button asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallbackData {
    /// Approve proposal `id`.
    Approve(i64),
    /// Reject proposal `id`.
    Reject(i64),
    /// Confirm the /kill started with this nonce.
    ConfirmKill(u64),
    /// Confirm the /resume started with this nonce.
    ConfirmResume(u64),
    /// Cancel the confirmation started with this nonce.
    Cancel(u64),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallbackError {
    #[error("button data is {0} bytes, over Telegram's 64-byte limit")]
    TooLong(usize),
    #[error("this button is from another version ({0}); send the command again")]
    UnknownVersion(String),
    #[error("unrecognised button data {0:?}")]
    Malformed(String),
}

impl CallbackData {
    /// The wire form, e.g. `v1:a:42`.
    pub fn encode(&self) -> String {
        match self {
            CallbackData::Approve(id) => format!("{VERSION}:a:{id}"),
            CallbackData::Reject(id) => format!("{VERSION}:r:{id}"),
            CallbackData::ConfirmKill(n) => format!("{VERSION}:k:{n:x}"),
            CallbackData::ConfirmResume(n) => format!("{VERSION}:u:{n:x}"),
            CallbackData::Cancel(n) => format!("{VERSION}:x:{n:x}"),
        }
    }

    pub fn parse(data: &str) -> Result<CallbackData, CallbackError> {
        if data.len() > MAX_LEN {
            return Err(CallbackError::TooLong(data.len()));
        }
        let malformed = || CallbackError::Malformed(data.to_string());
        let mut parts = data.split(':');
        let version = parts.next().ok_or_else(malformed)?;
        if version != VERSION {
            // Anything shaped like a version tag (v2, v10) is a version problem, the rest garbage.
            let looks_versioned = version.len() > 1
                && version.starts_with('v')
                && version[1..].chars().all(|c| c.is_ascii_digit());
            return Err(if looks_versioned {
                CallbackError::UnknownVersion(version.to_string())
            } else {
                malformed()
            });
        }
        let kind = parts.next().ok_or_else(malformed)?;
        let arg = parts.next().ok_or_else(malformed)?;
        if parts.next().is_some() || arg.is_empty() {
            return Err(malformed());
        }
        // Plain digits only: `parse` alone would accept "+5".
        let id = || -> Result<i64, CallbackError> {
            if !arg.chars().all(|c| c.is_ascii_digit()) {
                return Err(malformed());
            }
            arg.parse::<i64>().map_err(|_| malformed())
        };
        let nonce = || -> Result<u64, CallbackError> {
            if !arg.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(malformed());
            }
            u64::from_str_radix(arg, 16).map_err(|_| malformed())
        };
        match kind {
            "a" => Ok(CallbackData::Approve(id()?)),
            "r" => Ok(CallbackData::Reject(id()?)),
            "k" => Ok(CallbackData::ConfirmKill(nonce()?)),
            "u" => Ok(CallbackData::ConfirmResume(nonce()?)),
            "x" => Ok(CallbackData::Cancel(nonce()?)),
            _ => Err(malformed()),
        }
    }
}

impl fmt::Display for CallbackData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.encode())
    }
}

impl std::str::FromStr for CallbackData {
    type Err = CallbackError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CallbackData::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn all(id: i64, n: u64) -> [CallbackData; 5] {
        [
            CallbackData::Approve(id),
            CallbackData::Reject(id),
            CallbackData::ConfirmKill(n),
            CallbackData::ConfirmResume(n),
            CallbackData::Cancel(n),
        ]
    }

    #[test]
    fn examples() {
        assert_eq!(CallbackData::Approve(42).encode(), "v1:a:42");
        assert_eq!(CallbackData::Reject(7).encode(), "v1:r:7");
        assert_eq!(CallbackData::ConfirmKill(255).encode(), "v1:k:ff");
        assert_eq!(
            CallbackData::parse("v1:u:10"),
            Ok(CallbackData::ConfirmResume(16))
        );
        assert_eq!(CallbackData::parse("v1:x:0"), Ok(CallbackData::Cancel(0)));
    }

    #[test]
    fn extreme_values_fit_the_limit() {
        for d in all(i64::MAX, u64::MAX) {
            let s = d.encode();
            assert!(s.len() <= MAX_LEN, "{s} is {} bytes", s.len());
            assert_eq!(CallbackData::parse(&s), Ok(d));
        }
    }

    #[test]
    fn garbage_is_an_error() {
        for g in [
            "",
            "v1",
            "v1:",
            "v1:a",
            "v1:a:",
            "v1:a:x",
            "v1:a:-1",
            "v1:a:+1",
            "v1:a:1:2",
            "v1:q:1",
            "v1:k:zz",
            "approve 1",
            "1:a:1",
            "V1:a:1",
            "v1:a:99999999999999999999",
        ] {
            assert!(
                matches!(CallbackData::parse(g), Err(CallbackError::Malformed(_))),
                "{g:?} -> {:?}",
                CallbackData::parse(g)
            );
        }
    }

    #[test]
    fn unknown_version_is_its_own_error() {
        assert_eq!(
            CallbackData::parse("v2:a:1"),
            Err(CallbackError::UnknownVersion("v2".into()))
        );
        assert_eq!(
            CallbackData::parse("v0:k:ff"),
            Err(CallbackError::UnknownVersion("v0".into()))
        );
    }

    #[test]
    fn too_long_is_refused_before_parsing() {
        let long = format!("v1:a:{}", "1".repeat(70));
        assert_eq!(
            CallbackData::parse(&long),
            Err(CallbackError::TooLong(long.len()))
        );
    }

    proptest! {
        #[test]
        fn round_trip(id in 0i64..=i64::MAX, n in any::<u64>()) {
            for d in all(id, n) {
                let s = d.encode();
                prop_assert!(s.len() <= MAX_LEN);
                prop_assert_eq!(CallbackData::parse(&s), Ok(d));
            }
        }

        #[test]
        fn never_panics(s in ".{0,80}") {
            let _ = CallbackData::parse(&s);
        }
    }
}
