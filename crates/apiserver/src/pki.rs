//! The cluster's credentials, made on first start in `<data-dir>/pki`: a CA, the API server's
//! serving certificate, an admin client certificate (`kumo-admin`, group `system:masters`), a
//! bearer token for agents, and the admin kubeconfig. Later starts reuse them.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use std::path::{Path, PathBuf};

/// Errors making or reading credentials.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Certificate generation failed.
    #[error("certificate generation: {0}")]
    Cert(#[from] rcgen::Error),
}

/// Paths and PEM contents of the credentials.
#[derive(Debug, Clone)]
pub struct Pki {
    /// CA certificate PEM.
    pub ca_cert: String,
    /// Server certificate chain PEM.
    pub server_cert: String,
    /// Server key PEM.
    pub server_key: String,
    /// Admin client certificate PEM.
    pub admin_cert: String,
    /// Admin client key PEM.
    pub admin_key: String,
    /// The bearer token of the admin user (agents use it too until RBAC lands).
    pub admin_token: String,
    /// Directory holding the files.
    pub dir: PathBuf,
}

fn read(path: &Path) -> Result<String, PkiError> {
    std::fs::read_to_string(path).map_err(|source| PkiError::Io { path: path.into(), source })
}

fn write(path: &Path, contents: &str, private: bool) -> Result<(), PkiError> {
    std::fs::write(path, contents).map_err(|source| PkiError::Io { path: path.into(), source })?;
    if private {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|source| PkiError::Io { path: path.into(), source })?;
    }
    Ok(())
}

impl Pki {
    /// Load the credentials in `data_dir/pki`, creating what is missing. `hosts` are extra
    /// names and addresses the serving certificate must cover.
    pub fn load_or_create(data_dir: &Path, hosts: &[String]) -> Result<Pki, PkiError> {
        let dir = data_dir.join("pki");
        std::fs::create_dir_all(&dir)
            .map_err(|source| PkiError::Io { path: dir.clone(), source })?;
        let p = |n: &str| dir.join(n);
        if !p("ca.crt").exists() || !p("ca.key").exists() {
            let key = KeyPair::generate()?;
            let mut params = CertificateParams::new(Vec::<String>::new())?;
            params.distinguished_name = dn("kumo-ca", None);
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.key_usages = vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
                KeyUsagePurpose::DigitalSignature,
            ];
            params.not_after = rcgen::date_time_ymd(2036, 1, 1);
            let cert = params.self_signed(&key)?;
            write(&p("ca.crt"), &cert.pem(), false)?;
            write(&p("ca.key"), &key.serialize_pem(), true)?;
            // A new CA invalidates everything it signed before.
            for f in ["server.crt", "server.key", "admin.crt", "admin.key"] {
                let _ = std::fs::remove_file(p(f));
            }
        }
        let ca_cert = read(&p("ca.crt"))?;
        let ca_key = KeyPair::from_pem(&read(&p("ca.key"))?)?;
        let issuer = Issuer::from_ca_cert_pem(&ca_cert, &ca_key)?;
        let mut sans: Vec<String> = vec![
            "localhost".into(),
            "127.0.0.1".into(),
            "::1".into(),
            "kubernetes".into(),
            "kubernetes.default".into(),
            "kubernetes.default.svc".into(),
            "kubernetes.default.svc.cluster.local".into(),
            "127.64.0.1".into(),
        ];
        for h in hosts {
            if !sans.contains(h) {
                sans.push(h.clone());
            }
        }
        // Reissue the serving certificate when asked to serve a name it lacks.
        let sans_file = p("server.sans");
        let sans_text = sans.join("\n");
        let sans_changed =
            std::fs::read_to_string(&sans_file).map(|s| s != sans_text).unwrap_or(true);
        if sans_changed || !p("server.crt").exists() || !p("server.key").exists() {
            let key = KeyPair::generate()?;
            let mut params = CertificateParams::new(sans.clone())?;
            params.distinguished_name = dn("kube-apiserver", None);
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            params.not_after = rcgen::date_time_ymd(2035, 1, 1);
            let cert = params.signed_by(&key, &issuer)?;
            write(&p("server.crt"), &cert.pem(), false)?;
            write(&p("server.key"), &key.serialize_pem(), true)?;
            write(&sans_file, &sans_text, false)?;
        }
        if !p("admin.crt").exists() || !p("admin.key").exists() {
            let key = KeyPair::generate()?;
            let mut params = CertificateParams::new(Vec::<String>::new())?;
            params.distinguished_name = dn("kumo-admin", Some("system:masters"));
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            params.not_after = rcgen::date_time_ymd(2035, 1, 1);
            let cert = params.signed_by(&key, &issuer)?;
            write(&p("admin.crt"), &cert.pem(), false)?;
            write(&p("admin.key"), &key.serialize_pem(), true)?;
        }
        if !p("token").exists() {
            use rand::RngCore;
            let mut bytes = [0u8; 24];
            rand::rng().fill_bytes(&mut bytes);
            let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            write(&p("token"), &token, true)?;
        }
        Ok(Pki {
            ca_cert,
            server_cert: read(&p("server.crt"))?,
            server_key: read(&p("server.key"))?,
            admin_cert: read(&p("admin.crt"))?,
            admin_key: read(&p("admin.key"))?,
            admin_token: read(&p("token"))?.trim().to_string(),
            dir,
        })
    }

    /// The admin kubeconfig for a server at `server_url`.
    pub fn kubeconfig(&self, server_url: &str) -> String {
        use base64::Engine;
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: kumo\n  cluster:\n    server: {server_url}\n    certificate-authority-data: {}\nusers:\n- name: kumo-admin\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\ncontexts:\n- name: kumo\n  context:\n    cluster: kumo\n    user: kumo-admin\n    namespace: default\ncurrent-context: kumo\npreferences: {{}}\n",
            b64(&self.ca_cert),
            b64(&self.admin_cert),
            b64(&self.admin_key)
        )
    }
}

fn dn(cn: &str, org: Option<&str>) -> DistinguishedName {
    let mut d = DistinguishedName::new();
    d.push(DnType::CommonName, cn);
    if let Some(o) = org {
        d.push(DnType::OrganizationName, o);
    }
    d
}
