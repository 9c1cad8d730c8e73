//! Reading the client's `Authorization` header: which scheme, and the credential after it.
//! Scheme names are case-insensitive (RFC 9110 §11.1).

/// Longest credential accepted; anything longer is refused before any hashing or lookup.
pub const MAX_CREDENTIAL_LEN: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credentials<'a> {
    /// `Basic <base64(login:password)>`: exchanged for a token at the users service.
    Basic(&'a str),
    /// `Bearer <jwt>`: verified locally.
    Bearer(&'a str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialsError {
    Missing,
    Malformed,
    UnsupportedScheme,
}

pub fn parse(header: Option<&[u8]>) -> Result<Credentials<'_>, CredentialsError> {
    let header = header.ok_or(CredentialsError::Missing)?;
    let text = std::str::from_utf8(header).map_err(|_| CredentialsError::Malformed)?;
    let (scheme, rest) = text
        .trim()
        .split_once(' ')
        .ok_or(CredentialsError::Malformed)?;
    let credential = rest.trim();
    if credential.is_empty()
        || credential.len() > MAX_CREDENTIAL_LEN
        || credential.contains(char::is_whitespace)
    {
        return Err(CredentialsError::Malformed);
    }
    if scheme.eq_ignore_ascii_case("basic") {
        Ok(Credentials::Basic(credential))
    } else if scheme.eq_ignore_ascii_case("bearer") {
        Ok(Credentials::Bearer(credential))
    } else {
        Err(CredentialsError::UnsupportedScheme)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_schemes_case_insensitively() {
        assert_eq!(
            parse(Some(b"Basic dXNlcjpwYXNz")),
            Ok(Credentials::Basic("dXNlcjpwYXNz"))
        );
        assert_eq!(
            parse(Some(b"basic  dXNlcjpwYXNz ")),
            Ok(Credentials::Basic("dXNlcjpwYXNz"))
        );
        assert_eq!(
            parse(Some(b"BEARER a.b.c")),
            Ok(Credentials::Bearer("a.b.c"))
        );
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        assert_eq!(parse(None), Err(CredentialsError::Missing));
        assert_eq!(parse(Some(b"Basic")), Err(CredentialsError::Malformed));
        assert_eq!(parse(Some(b"Basic ")), Err(CredentialsError::Malformed));
        assert_eq!(parse(Some(b"Basic a b")), Err(CredentialsError::Malformed));
        assert_eq!(
            parse(Some(b"Digest x=y")),
            Err(CredentialsError::UnsupportedScheme)
        );
        assert_eq!(parse(Some(b"Basic \xff")), Err(CredentialsError::Malformed));
        let long = format!("Basic {}", "a".repeat(MAX_CREDENTIAL_LEN + 1));
        assert_eq!(
            parse(Some(long.as_bytes())),
            Err(CredentialsError::Malformed)
        );
    }
}
