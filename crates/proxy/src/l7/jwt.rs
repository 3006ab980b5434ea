//! JWT checks for Istio's RequestAuthentication: inline JWKS (RSA and EC keys), issuer,
//! audiences, expiry. Errors use the texts Envoy's jwt_authn filter answers with, so clients
//! and runbooks written for Istio read the same words.

use base64::Engine as _;
use ring::signature;
use serde_json::Value;

#[derive(Debug, Clone)]
pub struct JwtRule {
    pub issuer: String,
    pub audiences: Vec<String>,
    pub keys: Vec<Jwk>,
    /// Header name (lower case) and value prefix; default `authorization: Bearer `.
    pub from_headers: Vec<(String, String)>,
    pub from_params: Vec<String>,
    pub forward_original_token: bool,
}

#[derive(Debug, Clone)]
pub enum Jwk {
    Rsa {
        kid: Option<String>,
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// Uncompressed point `04 || x || y`.
    Ec {
        kid: Option<String>,
        crv: String,
        point: Vec<u8>,
    },
}

impl Jwk {
    fn kid(&self) -> Option<&str> {
        match self {
            Jwk::Rsa { kid, .. } | Jwk::Ec { kid, .. } => kid.as_deref(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("Jwt is not in the form of Header.Payload.Signature")]
    Malformed,
    #[error("Jwt issuer is not configured")]
    UnknownIssuer,
    #[error("Jwt verification fails")]
    BadSignature,
    #[error("Jwt is expired")]
    Expired,
    #[error("Jwt not yet valid")]
    NotYetValid,
    #[error("Audiences in Jwt are not allowed")]
    Audience,
}

fn b64(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).ok()
}

/// The keys of a JWKS document (`{"keys": [...]}`); keys of other types are skipped.
pub fn parse_jwks(text: &str) -> Vec<Jwk> {
    let Ok(doc) = serde_json::from_str::<Value>(text) else { return Vec::new() };
    doc["keys"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|k| {
            let kid = k["kid"].as_str().map(str::to_string);
            match k["kty"].as_str()? {
                "RSA" => {
                    Some(Jwk::Rsa { kid, n: b64(k["n"].as_str()?)?, e: b64(k["e"].as_str()?)? })
                }
                "EC" => {
                    let mut point = vec![4u8];
                    point.extend(b64(k["x"].as_str()?)?);
                    point.extend(b64(k["y"].as_str()?)?);
                    Some(Jwk::Ec { kid, crv: k["crv"].as_str()?.to_string(), point })
                }
                _ => None,
            }
        })
        .collect()
}

/// Check `token` against the rule for its issuer. Returns the rule's index and the claims.
pub fn verify(rules: &[JwtRule], token: &str, now_secs: i64) -> Result<(usize, Value), JwtError> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed);
    };
    let header: Value =
        b64(h).and_then(|b| serde_json::from_slice(&b).ok()).ok_or(JwtError::Malformed)?;
    let claims: Value =
        b64(p).and_then(|b| serde_json::from_slice(&b).ok()).ok_or(JwtError::Malformed)?;
    let sig = b64(s).ok_or(JwtError::Malformed)?;
    let issuer = claims["iss"].as_str().unwrap_or_default();
    let (idx, rule) = rules
        .iter()
        .enumerate()
        .find(|(_, r)| r.issuer == issuer)
        .ok_or(JwtError::UnknownIssuer)?;
    let alg = header["alg"].as_str().unwrap_or_default();
    let kid = header["kid"].as_str();
    let signed = &token[..h.len() + 1 + p.len()];
    let ok = rule
        .keys
        .iter()
        .filter(|k| kid.is_none() || k.kid().is_none() || k.kid() == kid)
        .any(|k| check(k, alg, signed.as_bytes(), &sig));
    if !ok {
        return Err(JwtError::BadSignature);
    }
    if let Some(exp) = claims["exp"].as_i64() {
        if now_secs >= exp {
            return Err(JwtError::Expired);
        }
    }
    if let Some(nbf) = claims["nbf"].as_i64() {
        if now_secs < nbf {
            return Err(JwtError::NotYetValid);
        }
    }
    if !rule.audiences.is_empty() {
        let auds: Vec<&str> = match &claims["aud"] {
            Value::String(s) => vec![s.as_str()],
            Value::Array(a) => a.iter().filter_map(|v| v.as_str()).collect(),
            _ => Vec::new(),
        };
        if !auds.iter().any(|a| rule.audiences.iter().any(|r| r == a)) {
            return Err(JwtError::Audience);
        }
    }
    Ok((idx, claims))
}

fn check(key: &Jwk, alg: &str, msg: &[u8], sig: &[u8]) -> bool {
    match (key, alg) {
        (Jwk::Rsa { n, e, .. }, "RS256" | "RS384" | "RS512" | "PS256" | "PS384" | "PS512") => {
            let params: &signature::RsaParameters = match alg {
                "RS256" => &signature::RSA_PKCS1_2048_8192_SHA256,
                "RS384" => &signature::RSA_PKCS1_2048_8192_SHA384,
                "RS512" => &signature::RSA_PKCS1_2048_8192_SHA512,
                "PS256" => &signature::RSA_PSS_2048_8192_SHA256,
                "PS384" => &signature::RSA_PSS_2048_8192_SHA384,
                _ => &signature::RSA_PSS_2048_8192_SHA512,
            };
            signature::RsaPublicKeyComponents { n, e }.verify(params, msg, sig).is_ok()
        }
        (Jwk::Ec { crv, point, .. }, "ES256") if crv == "P-256" => {
            signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                .verify(msg, sig)
                .is_ok()
        }
        (Jwk::Ec { crv, point, .. }, "ES384") if crv == "P-384" => {
            signature::UnparsedPublicKey::new(&signature::ECDSA_P384_SHA384_FIXED, point)
                .verify(msg, sig)
                .is_ok()
        }
        _ => false,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};

    /// A P-256 key pair, its JWKS, and a signer: what the e2e tests use too.
    pub struct TestIssuer {
        pair: EcdsaKeyPair,
        pub jwks: String,
    }

    impl TestIssuer {
        pub fn new() -> TestIssuer {
            let rng = SystemRandom::new();
            let pkcs8 =
                EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
            let pair =
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
                    .unwrap();
            let pk = pair.public_key().as_ref();
            let enc = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
            let jwks = serde_json::json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1",
                "x": enc(&pk[1..33]), "y": enc(&pk[33..65])}]})
            .to_string();
            TestIssuer { pair, jwks }
        }

        pub fn sign(&self, claims: &Value) -> String {
            let enc = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
            let header = enc(br#"{"alg":"ES256","kid":"k1","typ":"JWT"}"#);
            let body = enc(claims.to_string().as_bytes());
            let msg = format!("{header}.{body}");
            let sig = self.pair.sign(&SystemRandom::new(), msg.as_bytes()).unwrap();
            format!("{msg}.{}", enc(sig.as_ref()))
        }
    }

    fn rule(jwks: &str) -> JwtRule {
        JwtRule {
            issuer: "https://issuer.example".into(),
            audiences: vec!["shop".into()],
            keys: parse_jwks(jwks),
            from_headers: vec![],
            from_params: vec![],
            forward_original_token: false,
        }
    }

    #[test]
    fn valid_expired_foreign_and_forged_tokens() {
        let issuer = TestIssuer::new();
        let rules = vec![rule(&issuer.jwks)];
        let now = 1_700_000_000;
        let good = serde_json::json!({"iss": "https://issuer.example", "sub": "alice", "aud": "shop", "exp": now + 60});
        let (_, claims) = verify(&rules, &issuer.sign(&good), now).unwrap();
        assert_eq!(claims["sub"], "alice");
        let mut expired = good.clone();
        expired["exp"] = (now - 1).into();
        assert_eq!(verify(&rules, &issuer.sign(&expired), now), Err(JwtError::Expired));
        let mut foreign = good.clone();
        foreign["iss"] = "https://evil.example".into();
        assert_eq!(verify(&rules, &issuer.sign(&foreign), now), Err(JwtError::UnknownIssuer));
        let mut aud = good.clone();
        aud["aud"] = serde_json::json!(["other"]);
        assert_eq!(verify(&rules, &issuer.sign(&aud), now), Err(JwtError::Audience));
        // Signed by another key: the signature does not verify.
        let other = TestIssuer::new();
        assert_eq!(verify(&rules, &other.sign(&good), now), Err(JwtError::BadSignature));
        // Payload swapped after signing.
        let token = issuer.sign(&good);
        let mut parts: Vec<&str> = token.split('.').collect();
        let tampered = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(
            serde_json::json!({"iss": "https://issuer.example", "sub": "root", "aud": "shop"})
                .to_string(),
        );
        parts[1] = &tampered;
        assert_eq!(verify(&rules, &parts.join("."), now), Err(JwtError::BadSignature));
        assert_eq!(verify(&rules, "not-a-token", now), Err(JwtError::Malformed));
    }
}
