//! Kite order tags: at most 20 ASCII letters and digits, unique per proposal and leg (entry,
//! protective stop / target pair number n, exit), so any order can be found again at the
//! broker by its tag and decoded back to what it was for.

use serde::{Deserialize, Serialize};

/// Kite's limit on an order tag.
pub const MAX_TAG_LEN: usize = 20;

/// What an order of a proposal is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Leg {
    /// The entry order placed on approval.
    Entry,
    /// The SL-M stop of protective pair `n` (1-based; one pair per fill of the entry).
    Stop(u16),
    /// The LIMIT target of protective pair `n`.
    Target(u16),
    /// An exit of the proposal's position (exit signal, kill, square-off).
    Exit,
}

/// A decoded tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagOf {
    Proposal {
        proposal_id: i64,
        leg: Leg,
    },
    /// An exit not tied to one proposal (kill, square-off, paper bracket): its kind letter.
    Exit {
        kind: char,
    },
}

/// The tag of one leg of a proposal: `MFTP<id>E`, `MFTP<id>S<n>`, `MFTP<id>T<n>`, `MFTP<id>X`.
/// At most 20 characters for any id below 10^12 and pair number below 1000.
pub fn leg_tag(proposal_id: i64, leg: Leg) -> String {
    match leg {
        Leg::Entry => format!("MFTP{proposal_id}E"),
        Leg::Stop(n) => format!("MFTP{proposal_id}S{n}"),
        Leg::Target(n) => format!("MFTP{proposal_id}T{n}"),
        Leg::Exit => format!("MFTP{proposal_id}X"),
    }
}

/// A fresh exit tag of `kind` (a letter other than P): `MFT<KIND><base36 of nonce>`, <= 17 chars.
pub fn exit_tag(kind: char, nonce: u64) -> String {
    format!("MFT{}{}", kind.to_ascii_uppercase(), base36_upper(nonce))
}

/// Whether `tag` is one Kite accepts: 1..=20 ASCII letters and digits.
pub fn tag_is_valid(tag: &str) -> bool {
    !tag.is_empty() && tag.len() <= MAX_TAG_LEN && tag.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Decodes a tag made by [`leg_tag`] / [`exit_tag`], and the tags stored before them
/// (`mft-p<id>` entries, `mft-<kind><base36>` exits), so old rows keep their meaning.
pub fn parse_tag(tag: &str) -> Option<TagOf> {
    if let Some(rest) = tag.strip_prefix("mft-p") {
        return rest.parse::<i64>().ok().map(|proposal_id| TagOf::Proposal {
            proposal_id,
            leg: Leg::Entry,
        });
    }
    if let Some(rest) = tag.strip_prefix("mft-") {
        let kind = rest.chars().next()?;
        return Some(TagOf::Exit { kind });
    }
    let rest = tag.strip_prefix("MFT")?;
    let kind = rest.chars().next()?;
    if kind != 'P' {
        return kind.is_ascii_uppercase().then_some(TagOf::Exit {
            kind: kind.to_ascii_lowercase(),
        });
    }
    let body = &rest[1..];
    let split = body.find(|c: char| !c.is_ascii_digit())?;
    let proposal_id: i64 = body[..split].parse().ok()?;
    let (letter, n) = body[split..].split_at(1);
    let pair = || n.parse::<u16>().ok().filter(|n| *n > 0);
    let leg = match letter {
        "E" if n.is_empty() => Leg::Entry,
        "X" if n.is_empty() => Leg::Exit,
        "S" => Leg::Stop(pair()?),
        "T" => Leg::Target(pair()?),
        _ => return None,
    };
    Some(TagOf::Proposal { proposal_id, leg })
}

/// The other order of a protective pair: the target of a stop, the stop of a target.
pub fn sibling_tag(tag: &str) -> Option<String> {
    match parse_tag(tag)? {
        TagOf::Proposal {
            proposal_id,
            leg: Leg::Stop(n),
        } => Some(leg_tag(proposal_id, Leg::Target(n))),
        TagOf::Proposal {
            proposal_id,
            leg: Leg::Target(n),
        } => Some(leg_tag(proposal_id, Leg::Stop(n))),
        _ => None,
    }
}

fn base36_upper(mut n: u64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut out = Vec::with_capacity(13);
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_leg_tag_fits_kite_and_decodes_back() {
        for id in [1_i64, 42, 999_999, 999_999_999_999] {
            for leg in [
                Leg::Entry,
                Leg::Exit,
                Leg::Stop(1),
                Leg::Target(1),
                Leg::Stop(999),
                Leg::Target(999),
            ] {
                let tag = leg_tag(id, leg);
                assert!(tag_is_valid(&tag), "{tag:?} is not a valid Kite tag");
                assert_eq!(
                    parse_tag(&tag),
                    Some(TagOf::Proposal {
                        proposal_id: id,
                        leg
                    }),
                    "{tag}"
                );
            }
        }
        let tags: std::collections::HashSet<String> = [
            Leg::Entry,
            Leg::Exit,
            Leg::Stop(1),
            Leg::Target(1),
            Leg::Stop(2),
        ]
        .into_iter()
        .map(|l| leg_tag(7, l))
        .collect();
        assert_eq!(tags.len(), 5, "legs of one proposal have distinct tags");
        // Proposal 1 stop 12 vs proposal 11 ... never the same text.
        assert_ne!(leg_tag(1, Leg::Stop(12)), leg_tag(11, Leg::Stop(2)));
    }

    #[test]
    fn exit_tags_fit_kite_and_decode() {
        for kind in ['k', 'q', 'e', 's', 't', 'r'] {
            for nonce in [0, 35, u64::MAX] {
                let tag = exit_tag(kind, nonce);
                assert!(tag_is_valid(&tag), "{tag:?}");
                assert_eq!(parse_tag(&tag), Some(TagOf::Exit { kind }));
            }
        }
    }

    #[test]
    fn tags_stored_before_keep_their_meaning() {
        assert_eq!(
            parse_tag("mft-p17"),
            Some(TagOf::Proposal {
                proposal_id: 17,
                leg: Leg::Entry
            })
        );
        assert_eq!(parse_tag("mft-k3x9"), Some(TagOf::Exit { kind: 'k' }));
        assert_eq!(parse_tag("somebody-else"), None);
        assert_eq!(parse_tag("MFTP12Q"), None);
        assert_eq!(parse_tag("MFTP12S0"), None);
    }

    #[test]
    fn siblings_pair_stop_and_target() {
        assert_eq!(
            sibling_tag(&leg_tag(5, Leg::Stop(2))),
            Some(leg_tag(5, Leg::Target(2)))
        );
        assert_eq!(
            sibling_tag(&leg_tag(5, Leg::Target(1))),
            Some(leg_tag(5, Leg::Stop(1)))
        );
        assert_eq!(sibling_tag(&leg_tag(5, Leg::Entry)), None);
    }
}
