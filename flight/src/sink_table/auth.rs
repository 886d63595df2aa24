//! Optional bearer-token authentication of the sink-table service.
//!
//! With a token configured every call but `Handshake` must carry `authorization: Bearer
//! <token>`. `Handshake` exchanges credentials for that header: it accepts HTTP basic
//! credentials whose password is the token (any user name — what
//! `pyarrow.flight.FlightClient.authenticate_basic_token` and ADBC's `username`/`password`
//! options send) or the bearer header itself, and answers with the response header
//! `authorization: Bearer <token>`, which those clients put on their later calls. Without a
//! token everything is open, and `Handshake` answers with [`OPEN_BEARER`] so that clients
//! which insist on a header after a handshake get one.
//!
//! Tokens are compared in time independent of where they differ.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use tonic::metadata::MetadataMap;

use crate::{Error, Result};

/// The bearer value a handshake answers with when the service has no token.
pub(crate) const OPEN_BEARER: &str = "anonymous";

/// The credential check of every call.
#[derive(Clone, Default)]
pub(crate) struct BearerAuth {
    token: Option<String>,
}

impl std::fmt::Debug for BearerAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BearerAuth")
            .field("token", &self.token.as_ref().map(|_| "(hidden)"))
            .finish()
    }
}

impl BearerAuth {
    /// `None` (or an empty token) leaves the service open.
    pub(crate) fn new(token: Option<String>) -> Self {
        BearerAuth {
            token: token.filter(|t| !t.is_empty()),
        }
    }

    pub(crate) fn is_required(&self) -> bool {
        self.token.is_some()
    }

    /// Admits a call (not a handshake): its `authorization` header must be `Bearer <token>`.
    pub(crate) fn check(&self, metadata: &MetadataMap) -> Result<()> {
        let Some(token) = &self.token else {
            return Ok(());
        };
        match authorization(metadata) {
            Some(Credential::Bearer(presented))
                if constant_time_eq(presented, token.as_bytes()) =>
            {
                Ok(())
            }
            _ => Err(Error::Unauthenticated),
        }
    }

    /// Answers a handshake: the bearer value later calls carry (`Bearer <value>`).
    pub(crate) fn handshake(&self, metadata: &MetadataMap) -> Result<String> {
        let Some(token) = &self.token else {
            return Ok(OPEN_BEARER.to_string());
        };
        let presented = match authorization(metadata) {
            Some(Credential::Bearer(presented)) => presented.to_vec(),
            Some(Credential::Basic(encoded)) => {
                basic_password(encoded).ok_or(Error::Unauthenticated)?
            }
            None => return Err(Error::Unauthenticated),
        };
        if constant_time_eq(&presented, token.as_bytes()) {
            Ok(token.clone())
        } else {
            Err(Error::Unauthenticated)
        }
    }
}

enum Credential<'a> {
    Bearer(&'a [u8]),
    /// The base64 text after `Basic `.
    Basic(&'a [u8]),
}

/// The `authorization` header's credential; the scheme is case-insensitive (RFC 9110).
fn authorization(metadata: &MetadataMap) -> Option<Credential<'_>> {
    let value = metadata.get("authorization")?.as_bytes();
    let split = value.iter().position(|&b| b == b' ')?;
    let (scheme, rest) = value.split_at(split);
    let credential = rest.trim_ascii_start();
    if scheme.eq_ignore_ascii_case(b"bearer") {
        Some(Credential::Bearer(credential))
    } else if scheme.eq_ignore_ascii_case(b"basic") {
        Some(Credential::Basic(credential))
    } else {
        None
    }
}

/// The password of basic credentials `base64(user:password)`, padded or not (Go's Flight
/// client sends them unpadded).
fn basic_password(encoded: &[u8]) -> Option<Vec<u8>> {
    let decoded = STANDARD
        .decode(encoded)
        .or_else(|_| STANDARD_NO_PAD.decode(encoded))
        .ok()?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    Some(decoded[colon + 1..].to_vec())
}

/// `presented == expected`, in time that depends on the length of `presented` only: not on
/// where the bytes differ, nor on the length of `expected`.
fn constant_time_eq(presented: &[u8], expected: &[u8]) -> bool {
    let mut difference = u8::from(presented.len() != expected.len());
    if expected.is_empty() {
        return presented.is_empty();
    }
    for (i, byte) in presented.iter().enumerate() {
        difference |= byte ^ expected[i % expected.len()];
    }
    std::hint::black_box(difference) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_authorization(value: &str) -> MetadataMap {
        let mut metadata = MetadataMap::new();
        metadata.insert("authorization", value.parse().unwrap());
        metadata
    }

    #[test]
    fn open_service_admits_everything() {
        let auth = BearerAuth::new(None);
        assert!(!auth.is_required());
        assert!(auth.check(&MetadataMap::new()).is_ok());
        assert!(auth.check(&with_authorization("Bearer whatever")).is_ok());
        assert_eq!(auth.handshake(&MetadataMap::new()).unwrap(), OPEN_BEARER);
        assert!(!BearerAuth::new(Some(String::new())).is_required());
    }

    #[test]
    fn calls_need_the_bearer_token() {
        let auth = BearerAuth::new(Some("s3cret".into()));
        assert!(auth.check(&with_authorization("Bearer s3cret")).is_ok());
        assert!(auth.check(&with_authorization("bearer s3cret")).is_ok());
        for wrong in [
            "Bearer s3cre",
            "Bearer s3cret2",
            "Bearer ",
            "s3cret",
            "Basic czNjcmV0",
        ] {
            assert!(
                matches!(
                    auth.check(&with_authorization(wrong)),
                    Err(Error::Unauthenticated)
                ),
                "{wrong}"
            );
        }
        assert!(auth.check(&MetadataMap::new()).is_err());
    }

    #[test]
    fn handshake_takes_basic_credentials_with_the_token_as_password() {
        let auth = BearerAuth::new(Some("s3cret".into()));
        let basic = |credentials: &str, pad: bool| {
            let encoded = if pad {
                STANDARD.encode(credentials)
            } else {
                STANDARD_NO_PAD.encode(credentials)
            };
            with_authorization(&format!("Basic {encoded}"))
        };
        assert_eq!(
            auth.handshake(&basic("anyone:s3cret", true)).unwrap(),
            "s3cret"
        );
        // 13 bytes: unpadded base64 differs from padded.
        assert_eq!(
            auth.handshake(&basic("bob:s3cret", false)).unwrap(),
            "s3cret"
        );
        assert_eq!(auth.handshake(&basic(":s3cret", true)).unwrap(), "s3cret");
        assert_eq!(
            auth.handshake(&with_authorization("Bearer s3cret"))
                .unwrap(),
            "s3cret"
        );
        assert!(auth.handshake(&basic("anyone:wrong", true)).is_err());
        assert!(auth.handshake(&basic("no colon", true)).is_err());
        assert!(auth.handshake(&with_authorization("Basic !!!")).is_err());
        assert!(auth.handshake(&with_authorization("Bearer nope")).is_err());
        assert!(auth.handshake(&MetadataMap::new()).is_err());
    }

    #[test]
    fn constant_time_eq_compares_bytes() {
        assert!(constant_time_eq(b"", b""));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(!constant_time_eq(b"abab", b"ab"));
        assert!(!constant_time_eq(b"", b"ab"));
        assert!(!constant_time_eq(b"a", b""));
    }
}
