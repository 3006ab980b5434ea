//! The `kubernetes.io/kube-apiserver-client` signer: an approved CertificateSigningRequest
//! for that signer gets a client certificate from the cluster CA in `status.certificate`, as
//! kube-controller-manager's signing controller issues it
//! (<https://kubernetes.io/docs/reference/access-authn-authz/certificate-signing-requests/#kubernetes-signers>).
//! The certificate carries the request's subject (CN = user, O = groups), which is exactly what
//! kumo's authentication reads, so an approved request yields a working kubeconfig identity.
//! Other signers' requests stay approved and unsigned, for their own signers to serve.

use crate::pki::Pki;
use chrono::{Datelike, Timelike};
use rcgen::{
    CertificateSigningRequestParams, ExtendedKeyUsagePurpose, Issuer, KeyPair, KeyUsagePurpose,
};
use serde_json::Value;

/// The signer this module implements.
pub const CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client";

/// Longest and default validity (upstream's `--cluster-signing-duration`, one year).
const MAX_SECONDS: i64 = 365 * 24 * 3600;

/// The cluster CA, able to sign client certificates.
pub struct Signer {
    ca_cert: String,
    ca_key: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer { .. }")
    }
}

impl Signer {
    /// The signer of this server's CA (`None` when the key cannot be read).
    pub fn from_pki(pki: &Pki) -> Option<Signer> {
        let ca_key = std::fs::read_to_string(pki.dir.join("ca.key")).ok()?;
        Some(Signer { ca_cert: pki.ca_cert.clone(), ca_key })
    }

    /// Sign `csr` (a CertificateSigningRequest object): the PEM certificate, or why not.
    pub fn sign(&self, csr: &Value) -> Result<String, String> {
        use base64::Engine;
        let usages: Vec<&str> = csr["spec"]["usages"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        if !usages.contains(&"client auth") {
            return Err(
                "kube-apiserver-client requests must include the \"client auth\" usage".into()
            );
        }
        let allowed = ["client auth", "digital signature", "key encipherment"];
        if let Some(u) = usages.iter().find(|u| !allowed.contains(u)) {
            return Err(format!("usage {u:?} is not allowed for {CLIENT_SIGNER}"));
        }
        let pem = base64::engine::general_purpose::STANDARD
            .decode(csr["spec"]["request"].as_str().unwrap_or(""))
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or("spec.request is not base64-encoded PEM")?;
        let mut request =
            CertificateSigningRequestParams::from_pem(&pem).map_err(|e| e.to_string())?;
        let seconds = csr["spec"]["expirationSeconds"]
            .as_i64()
            .unwrap_or(MAX_SECONDS)
            .clamp(600, MAX_SECONDS);
        let now = chrono::Utc::now();
        let midnight = rcgen::date_time_ymd(now.year(), now.month() as u8, now.day() as u8);
        let since_midnight = i64::from(now.num_seconds_from_midnight());
        // Backdated 5 minutes against clock skew, as upstream's signer does.
        request.params.not_before =
            midnight + std::time::Duration::from_secs((since_midnight - 300).max(0) as u64);
        request.params.not_after =
            midnight + std::time::Duration::from_secs((since_midnight + seconds) as u64);
        request.params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        request.params.key_usages =
            vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        request.params.is_ca = rcgen::IsCa::ExplicitNoCa;
        let key = KeyPair::from_pem(&self.ca_key).map_err(|e| e.to_string())?;
        let issuer = Issuer::from_ca_cert_pem(&self.ca_cert, &key).map_err(|e| e.to_string())?;
        let cert = request.signed_by(&issuer).map_err(|e| e.to_string())?;
        Ok(cert.pem())
    }
}
