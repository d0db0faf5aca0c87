//! TLS for Stratos links: the cluster CA, certificates by role, rustls configurations, and the
//! identity a peer's certificate names.
//!
//! **Certificates.** `stratos admin ca init --dir D` makes the cluster CA (`D/ca.pem`,
//! `D/ca.key`, the key readable by its owner only). `stratos admin cert issue` signs a
//! certificate for a node (role `om`, `scm` or `datanode`) or a user (role `user`, with
//! groups). The identity is written as subject-alternative-name URIs, one per fact:
//! `stratos:role:user`, `stratos:name:alice`, `stratos:group:admins`; node certificates also
//! name their hosts (DNS names and IP addresses) so that clients can check whom they reached.
//! URIs rather than subject fields: each is one typed, unambiguous entry that needs no parsing
//! of distinguished names, and room is left for more (an S3 access key id names its principal
//! the same way).
//!
//! **Handshakes.** TLS 1.3 and 1.2 with rustls on ring (no OpenSSL). A server requires a client
//! certificate signed by the cluster CA and valid now (mutual TLS); a client requires the
//! server's certificate to be signed by the cluster CA and to name the host it dialled. rustls's
//! own errors say which check failed (no certificate, unknown issuer, expired, not yet valid,
//! wrong name); [`explain`] turns them into a sentence that names the file to fix.
//!
//! **Principals.** A server takes the caller's identity from its certificate
//! ([`identity_of`]), never from a request header.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// A certificate's role in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Om,
    Scm,
    Datanode,
    User,
    /// The S3 gateway: acts for the principal whose S3 signature it verified (the OM takes the
    /// request header's user from it) and may read S3 secrets.
    S3g,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Om => "om",
            Role::Scm => "scm",
            Role::Datanode => "datanode",
            Role::User => "user",
            Role::S3g => "s3g",
        }
    }

    pub fn parse(s: &str) -> Result<Role, TlsError> {
        match s {
            "om" => Ok(Role::Om),
            "scm" => Ok(Role::Scm),
            "datanode" => Ok(Role::Datanode),
            "user" => Ok(Role::User),
            "s3g" => Ok(Role::S3g),
            _ => Err(TlsError::Invalid(format!("role {s:?}: one of om, scm, datanode, s3g, user"))),
        }
    }
}

/// Who a certificate says its holder is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub role: Role,
    /// A user's name, or a node's (`om-1`, `scm`, `dn-2`).
    pub name: String,
    pub groups: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{0}")]
    Invalid(String),
    #[error("making a certificate: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("TLS: {0}")]
    Rustls(#[from] rustls::Error),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TlsError + '_ {
    move |source| TlsError::Io { path: path.to_path_buf(), source }
}

const URI_PREFIX: &str = "stratos:";

/// A name as a certificate may carry it: what user and node names allow (no separators that
/// would make a URI ambiguous).
fn check_name(what: &str, s: &str) -> Result<(), TlsError> {
    let ok = !s.is_empty() && s.len() <= 255 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b));
    if ok { Ok(()) } else { Err(TlsError::Invalid(format!("{what} {s:?}: 1 to 255 of a-z, A-Z, 0-9, '-', '_', '.', '@'"))) }
}

fn ia5(s: String) -> Result<SanType, TlsError> {
    Ok(SanType::URI(s.try_into().map_err(|e| TlsError::Invalid(format!("not ASCII: {e}")))?))
}

fn time_at(t: std::time::SystemTime) -> Result<time::OffsetDateTime, TlsError> {
    let secs = t.duration_since(std::time::UNIX_EPOCH).map_err(|_| TlsError::Invalid("a time before 1970".into()))?.as_secs();
    time::OffsetDateTime::from_unix_timestamp(secs as i64).map_err(|e| TlsError::Invalid(e.to_string()))
}

/// Writes `contents` to a new file (never over an existing one), readable by its owner only if
/// `secret`.
fn write_new(path: &Path, contents: &str, secret: bool) -> Result<(), TlsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(if secret { 0o600 } else { 0o644 })
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => TlsError::Invalid(format!("{} exists already: remove it first, or choose another place", path.display())),
            _ => TlsError::Io { path: path.to_path_buf(), source: e },
        })?;
    f.write_all(contents.as_bytes()).and_then(|()| f.sync_all()).map_err(io(path))
}

/// The CA's files in `dir`.
pub fn ca_files(dir: &Path) -> (PathBuf, PathBuf) {
    (dir.join("ca.pem"), dir.join("ca.key"))
}

/// Creates the cluster CA in `dir` (created if missing): `ca.pem` and `ca.key`, valid for
/// `days`. Refuses to overwrite an existing CA.
pub fn ca_init(dir: &Path, days: u32) -> Result<PathBuf, TlsError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let (cert_path, key_path) = ca_files(dir);
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    // A name of its own: two clusters' CAs must not share a subject, or a certificate of one
    // is matched to the other by name and fails as a bad signature rather than as "unknown".
    let id: u64 = rand::random();
    dn.push(DnType::CommonName, format!("Stratos cluster CA {id:016x}"));
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let now = std::time::SystemTime::now();
    params.not_before = time_at(now - std::time::Duration::from_secs(3600))?;
    params.not_after = time_at(now + std::time::Duration::from_secs(u64::from(days) * 86_400))?;
    let cert = params.self_signed(&key)?;
    write_new(&key_path, &key.serialize_pem(), true)?;
    write_new(&cert_path, &cert.pem(), false)?;
    Ok(cert_path)
}

/// What a certificate is issued for.
#[derive(Debug, Clone)]
pub struct Request {
    pub role: Role,
    pub name: String,
    pub groups: Vec<String>,
    /// DNS names and IP addresses the holder serves on (nodes).
    pub hosts: Vec<String>,
    pub not_before: std::time::SystemTime,
    pub not_after: std::time::SystemTime,
}

impl Request {
    /// Valid from an hour ago (clocks differ a little) for `days`.
    pub fn new(role: Role, name: &str, days: u32) -> Request {
        let now = std::time::SystemTime::now();
        Request {
            role,
            name: name.to_string(),
            groups: Vec::new(),
            hosts: Vec::new(),
            not_before: now - std::time::Duration::from_secs(3600),
            not_after: now + std::time::Duration::from_secs(u64::from(days) * 86_400),
        }
    }
}

/// Signs a certificate for `req` with the CA in `ca_dir`; writes `out_dir/NAME.pem` and
/// `out_dir/NAME.key` (NAME: the request's name) and returns their paths.
pub fn issue(ca_dir: &Path, out_dir: &Path, req: &Request) -> Result<(PathBuf, PathBuf), TlsError> {
    check_name("name", &req.name)?;
    for g in &req.groups {
        check_name("group", g)?;
    }
    if req.not_after <= req.not_before {
        return Err(TlsError::Invalid("the certificate would end before it begins".into()));
    }
    let (ca_cert_path, ca_key_path) = ca_files(ca_dir);
    let ca_pem = std::fs::read_to_string(&ca_cert_path).map_err(io(&ca_cert_path))?;
    let ca_key_pem = std::fs::read_to_string(&ca_key_path).map_err(io(&ca_key_path))?;
    let ca_key = KeyPair::from_pem(&ca_key_pem).map_err(|e| TlsError::Invalid(format!("{}: not a private key: {e}", ca_key_path.display())))?;
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key).map_err(|e| TlsError::Invalid(format!("{}: not a CA certificate: {e}", ca_cert_path.display())))?;

    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("{} {}", req.role.as_str(), req.name));
    params.distinguished_name = dn;
    let mut sans = vec![ia5(format!("{URI_PREFIX}role:{}", req.role.as_str()))?, ia5(format!("{URI_PREFIX}name:{}", req.name))?];
    for g in &req.groups {
        sans.push(ia5(format!("{URI_PREFIX}group:{g}"))?);
    }
    for h in &req.hosts {
        sans.push(match h.parse::<std::net::IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(h.clone().try_into().map_err(|e| TlsError::Invalid(format!("host {h:?}: {e}")))?),
        });
    }
    params.subject_alt_names = sans;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth, rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    params.not_before = time_at(req.not_before)?;
    params.not_after = time_at(req.not_after)?;
    let cert = params.signed_by(&key, &issuer)?;
    std::fs::create_dir_all(out_dir).map_err(io(out_dir))?;
    let (cert_path, key_path) = (out_dir.join(format!("{}.pem", req.name)), out_dir.join(format!("{}.key", req.name)));
    write_new(&key_path, &key.serialize_pem(), true)?;
    write_new(&cert_path, &cert.pem(), false)?;
    Ok((cert_path, key_path))
}

/// The identity a certificate (DER) names; an error for a certificate that names none.
pub fn identity_of(der: &[u8]) -> Result<Identity, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| format!("unreadable certificate: {e}"))?;
    let san = cert.subject_alternative_name().map_err(|e| format!("certificate names: {e}"))?.ok_or("the certificate names no Stratos identity")?;
    let (mut role, mut name, mut groups) = (None, None, Vec::new());
    for n in &san.value.general_names {
        let x509_parser::extensions::GeneralName::URI(uri) = n else { continue };
        let Some(rest) = uri.strip_prefix(URI_PREFIX) else { continue };
        let dup = |what: &str| format!("the certificate names its {what} twice");
        if let Some(r) = rest.strip_prefix("role:") {
            if role.replace(Role::parse(r).map_err(|e| e.to_string())?).is_some() {
                return Err(dup("role"));
            }
        } else if let Some(v) = rest.strip_prefix("name:") {
            check_name("name", v).map_err(|e| e.to_string())?;
            if name.replace(v.to_string()).is_some() {
                return Err(dup("name"));
            }
        } else if let Some(g) = rest.strip_prefix("group:") {
            check_name("group", g).map_err(|e| e.to_string())?;
            groups.push(g.to_string());
        }
    }
    match (role, name) {
        (Some(role), Some(name)) => Ok(Identity { role, name, groups }),
        _ => Err("the certificate names no Stratos role and name".into()),
    }
}

/// The identity the first certificate of a PEM file names.
pub fn identity_of_file(path: &Path) -> Result<Identity, String> {
    let first = certs(path).map_err(|e| e.to_string())?.into_iter().next().ok_or("no certificate")?;
    identity_of(&first)
}

/// The three files a TLS endpoint needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Files {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Files {
    /// `dir/ca.pem` and `dir/NAME.pem`, `dir/NAME.key`, as `stratos dev` lays them out.
    pub fn in_dir(dir: &Path, name: &str) -> Files {
        Files { ca: dir.join("ca.pem"), cert: dir.join(format!("{name}.pem")), key: dir.join(format!("{name}.key")) }
    }

    fn load(&self) -> Result<(rustls::RootCertStore, Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
        let roots = roots(&self.ca)?;
        let chain = certs(&self.cert)?;
        std::fs::metadata(&self.key).map_err(io(&self.key))?;
        let key = PrivateKeyDer::from_pem_file(&self.key).map_err(|e| TlsError::Invalid(format!("{}: no private key in it: {e}", self.key.display())))?;
        Ok((roots, chain, key))
    }
}

/// A certificate and key that rustls refuses together, as a sentence.
fn key_error(files: &Files, e: rustls::Error) -> TlsError {
    match e {
        rustls::Error::InconsistentKeys(_) => TlsError::Invalid(format!("{} does not belong to the certificate {}: give the key issued with it", files.key.display(), files.cert.display())),
        e => TlsError::Invalid(format!("{} with {}: {e}", files.cert.display(), files.key.display())),
    }
}

/// The cluster CA's certificates in `ca` as the roots to trust.
fn roots(ca: &Path) -> Result<rustls::RootCertStore, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for c in certs(ca)? {
        roots.add(c).map_err(|e| TlsError::Invalid(format!("{}: {e}", ca.display())))?;
    }
    Ok(roots)
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    std::fs::metadata(path).map_err(io(path))?;
    let out: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| TlsError::Invalid(format!("{}: {e}", path.display())))?
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Invalid(format!("{}: {e}", path.display())))?;
    if out.is_empty() {
        return Err(TlsError::Invalid(format!("{}: no certificate in it", path.display())));
    }
    Ok(out)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A server's configuration: its certificate, and client certificates required and checked
/// against the cluster CA (validity dates included).
pub fn server_config(files: &Files) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    server_config_with(files, true)
}

/// [`server_config`], with client certificates required or, `!required`, checked when given.
fn server_config_with(files: &Files, required: bool) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let (roots, chain, key) = files.load()?;
    let builder = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
    let builder = if required { builder } else { builder.allow_unauthenticated() };
    let verifier = builder.build().map_err(|e| TlsError::Invalid(format!("{}: {e}", files.ca.display())))?;
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| key_error(files, e))?;
    Ok(Arc::new(config))
}

/// A client's configuration: the cluster CA to check servers with, and its own certificate.
pub fn client_config(files: &Files) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let (roots, chain, key) = files.load()?;
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| key_error(files, e))?;
    Ok(Arc::new(config))
}

/// The TLS files of a node from its three settings (`--tls-ca`, `--tls-cert`, `--tls-key`):
/// all three (TLS), none (plain TCP), or an error that says they go together.
pub fn files_of(ca: Option<&Path>, cert: Option<&Path>, key: Option<&Path>) -> Result<Option<Files>, TlsError> {
    match (ca, cert, key) {
        (None, None, None) => Ok(None),
        (Some(ca), Some(cert), Some(key)) => Ok(Some(Files { ca: ca.to_path_buf(), cert: cert.to_path_buf(), key: key.to_path_buf() })),
        _ => Err(TlsError::Invalid("--tls-ca, --tls-cert and --tls-key (tls_ca, tls_cert, tls_key) go together: give all three or none".into())),
    }
}

/// A node's TLS, from its certificate: as a server of RPC (client certificates required), as
/// a server of HTTP (client certificates checked when given: a metrics scraper or a health
/// probe may have none, and `/health` and `/prom` hold no namespace data), and as a client of
/// other nodes.
#[derive(Clone, Debug)]
pub struct NodeTls {
    pub files: Files,
    pub server: Arc<rustls::ServerConfig>,
    pub http: Arc<rustls::ServerConfig>,
    pub client: Arc<rustls::ClientConfig>,
}

impl NodeTls {
    /// Loads `files`; a node whose certificate names no identity (or the wrong role) is an
    /// error at start, not at its first connection.
    pub fn load(files: &Files, role: Role) -> Result<NodeTls, TlsError> {
        let id = identity_of_file(&files.cert).map_err(|e| TlsError::Invalid(format!("{}: {e}", files.cert.display())))?;
        // Its peers would refuse it at every handshake: say so once, at the start.
        if let Some(first) = certs(&files.cert)?.first()
            && let Ok((_, cert)) = x509_parser::parse_x509_certificate(first.as_ref())
            && !cert.validity().is_valid()
        {
            let v = cert.validity();
            return Err(TlsError::Invalid(format!(
                "{}: the certificate is valid from {} to {}, and not now: issue a new one (`stratos admin cert issue`)",
                files.cert.display(),
                v.not_before,
                v.not_after
            )));
        }
        if id.role != role {
            return Err(TlsError::Invalid(format!(
                "{}: a certificate for {} {}, and this node's role is {} (issue one with `stratos admin cert issue --role {}`)",
                files.cert.display(),
                id.role.as_str(),
                id.name,
                role.as_str(),
                role.as_str()
            )));
        }
        Ok(NodeTls { files: files.clone(), server: server_config(files)?, http: server_config_with(files, false)?, client: client_config(files)? })
    }
}

impl NodeTls {
    /// Refuses a node whose certificate does not name `host` (the host part of the address
    /// others dial it at: an IP address or a DNS name), at start: every peer would refuse the
    /// handshake otherwise, and only on first use. An unspecified address (0.0.0.0) is not
    /// checked: the node does not know which name others use.
    pub fn check_host(&self, host: &str) -> Result<(), TlsError> {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_unspecified()) || host.is_empty() {
            return Ok(());
        }
        let first = certs(&self.files.cert)?.into_iter().next().ok_or_else(|| TlsError::Invalid(format!("{}: no certificate in it", self.files.cert.display())))?;
        let (_, cert) = x509_parser::parse_x509_certificate(first.as_ref()).map_err(|e| TlsError::Invalid(format!("{}: {e}", self.files.cert.display())))?;
        let mut named = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for n in &san.value.general_names {
                match n {
                    x509_parser::extensions::GeneralName::DNSName(d) => named.push(d.to_ascii_lowercase()),
                    x509_parser::extensions::GeneralName::IPAddress(b) => match b.len() {
                        4 => named.push(std::net::IpAddr::from(<[u8; 4]>::try_from(*b).expect("4 bytes")).to_string()),
                        16 => named.push(std::net::IpAddr::from(<[u8; 16]>::try_from(*b).expect("16 bytes")).to_string()),
                        _ => {}
                    },
                    _ => {}
                }
            }
        }
        let want = host.parse::<std::net::IpAddr>().map_or_else(|_| host.to_ascii_lowercase(), |ip| ip.to_string());
        if named.contains(&want) {
            return Ok(());
        }
        Err(TlsError::Invalid(format!(
            "{}: the certificate names the hosts [{}], not {host}, which this node serves at: peers would refuse it (issue one with `--host {host}`)",
            self.files.cert.display(),
            named.join(", ")
        )))
    }
}

/// The identity of the server at the other end of a client TLS connection (its certificate's),
/// or why there is none.
pub fn server_identity(session: &rustls::ClientConnection) -> Result<Identity, String> {
    let der = session.peer_certificates().and_then(|c| c.first()).ok_or("the server presented no certificate")?;
    identity_of(der.as_ref())
}

/// `stream` with a read buffer of [`crate::TLS_READ_BUFFER_BYTES`] for rustls to read from, for
/// a connection of few peers and large messages (a client's, a datanode's, the SCM's, Raft's).
pub fn under_tls<S: futures_util::io::AsyncRead>(stream: S) -> futures_util::io::BufReader<S> {
    futures_util::io::BufReader::with_capacity(crate::TLS_READ_BUFFER_BYTES, stream)
}

/// The name a client checks the server's certificate against: the host part of `addr`.
pub fn server_name(addr: &str) -> Result<ServerName<'static>, String> {
    let host = match addr.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => addr.rsplit_once(':').map_or(addr, |(h, _)| h),
    };
    ServerName::try_from(host.to_string()).map_err(|e| format!("{host:?} is not a host name: {e}"))
}

/// The TLS configuration this process's client connections use (None: plain TCP). Set once by
/// a command's entry point ([`use_client_env`]); library users may set their own.
static CLIENT: std::sync::RwLock<Option<Arc<rustls::ClientConfig>>> = std::sync::RwLock::new(None);

pub fn set_client(config: Option<Arc<rustls::ClientConfig>>) {
    *CLIENT.write().unwrap_or_else(std::sync::PoisonError::into_inner) = config;
}

pub fn client() -> Option<Arc<rustls::ClientConfig>> {
    CLIENT.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
}

/// Sets this process's client TLS from `STRATOS_CA`, `STRATOS_CERT` and `STRATOS_KEY`: all three
/// (TLS with this certificate), `STRATOS_CA` alone (TLS without a client certificate, which a
/// Stratos server refuses, saying so), or none (plain TCP).
pub fn use_client_env() -> Result<(), TlsError> {
    let get = |n: &str| std::env::var_os(n).filter(|v| !v.is_empty()).map(PathBuf::from);
    let config = match (get("STRATOS_CA"), get("STRATOS_CERT"), get("STRATOS_KEY")) {
        (None, None, None) => None,
        (Some(ca), Some(cert), Some(key)) => Some(client_config(&Files { ca, cert, key }).map_err(from_env)?),
        (Some(ca), None, None) => Some(Arc::new(
            rustls::ClientConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?.with_root_certificates(roots(&ca).map_err(from_env)?).with_no_client_auth(),
        )),
        _ => return Err(TlsError::Invalid("STRATOS_CERT and STRATOS_KEY go together, with STRATOS_CA: set all three for TLS, or none".into())),
    };
    set_client(config);
    Ok(())
}

/// An error about the files `STRATOS_CA`, `STRATOS_CERT` or `STRATOS_KEY` name, saying where
/// the paths came from.
fn from_env(e: TlsError) -> TlsError {
    TlsError::Invalid(format!("{e} (the files STRATOS_CA, STRATOS_CERT and STRATOS_KEY name)"))
}

/// A handshake failure as a sentence that says what to fix.
pub fn explain(e: &std::io::Error) -> String {
    let inner = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>());
    use rustls::{CertificateError as C, Error as E};
    let why = match inner {
        Some(E::InvalidCertificate(C::Expired | C::ExpiredContext { .. })) => "the server's certificate has expired".into(),
        Some(E::InvalidCertificate(C::NotValidYet | C::NotValidYetContext { .. })) => "the server's certificate is not valid yet (check the clocks)".into(),
        Some(E::InvalidCertificate(C::UnknownIssuer | C::BadSignature)) => "the server's certificate is not signed by this cluster's CA (STRATOS_CA)".into(),
        Some(E::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. })) => "the server's certificate does not name the host dialled".into(),
        Some(E::AlertReceived(a)) => alert(&format!("{a:?}")),
        Some(E::InvalidMessage(_)) => "the server does not speak TLS (started without --tls-ca, --tls-cert and --tls-key?)".into(),
        Some(other) => other.to_string(),
        None => e.to_string(),
    };
    format!("TLS handshake failed: {why}")
}

/// What a TLS alert from the server (rustls's name for it) means for this client. With TLS 1.3
/// the server checks the client's certificate after the client finished its side of the
/// handshake, so a refusal arrives as an alert on the first call; see [`explain_call_error`].
fn alert(name: &str) -> String {
    match name {
        "CertificateExpired" => "the server refused this client's certificate: it has expired".into(),
        "UnknownCA" => "the server refused this client's certificate: it is not signed by the cluster's CA".into(),
        "CertificateRequired" => "the server requires a client certificate (set STRATOS_CA, STRATOS_CERT and STRATOS_KEY)".into(),
        "BadCertificate" | "UnsupportedCertificate" => "the server refused this client's certificate as malformed or of the wrong kind".into(),
        "AccessDenied" => "the server refused this client's certificate: it names no Stratos identity".into(),
        other => format!("the server refused the handshake ({other})"),
    }
}

/// A call's error text that carries a TLS alert (`received fatal alert: NAME`), as a sentence.
pub fn explain_call_error(text: &str) -> Option<String> {
    let name = text.split("received fatal alert: ").nth(1)?.split(|c: char| !c.is_ascii_alphanumeric()).next()?;
    Some(format!("TLS handshake failed: {}", alert(name)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alerts_in_call_errors_become_sentences() {
        let s = explain_call_error("Failed: received fatal alert: CertificateRequired").expect("an alert");
        assert!(s.contains("requires a client certificate"), "{s}");
        let s = explain_call_error("received fatal alert: UnknownCA, closing").expect("an alert");
        assert!(s.contains("not signed by the cluster's CA"), "{s}");
        assert!(explain_call_error("Premature end of file").is_none());
    }

    #[test]
    fn server_names_come_from_the_address() {
        assert_eq!(server_name("127.0.0.1:9862").expect("ip"), ServerName::try_from("127.0.0.1").expect("ip"));
        assert_eq!(server_name("[::1]:9862").expect("v6"), ServerName::try_from("::1").expect("v6"));
        assert_eq!(server_name("om1.example:9862").expect("dns"), ServerName::try_from("om1.example").expect("dns"));
        assert!(server_name("bad name:1").is_err());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 512, ..Default::default() })]

        /// The CI-sized twin of the `certificate_identity` fuzz target: a real certificate with
        /// bytes flipped, cut or appended, and random bytes, give an identity or an error, never
        /// a panic; an identity read from a damaged certificate is still a well-formed one.
        #[test]
        fn damaged_certificates_get_errors_not_panics(
            flips in proptest::collection::vec((0usize..2048, 1u8..=255), 0..8),
            cut in proptest::option::of(0usize..2048),
            junk in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
        ) {
            let mut der = SAMPLE.with(|d| d.clone());
            for (at, x) in flips {
                let n = der.len();
                der[at % n] ^= x;
            }
            if let Some(c) = cut {
                der.truncate(c % (der.len() + 1));
            }
            der.extend_from_slice(&junk);
            if let Ok(id) = identity_of(&der) {
                check_name("name", &id.name).expect("a name identity_of accepted is well-formed");
            }
            let _ = identity_of(&junk);
        }
    }

    thread_local! {
        /// One user certificate with groups, made once per test thread.
        static SAMPLE: Vec<u8> = {
            let dir = tempfile::tempdir().expect("tempdir");
            ca_init(dir.path(), 1).expect("ca");
            let mut req = Request::new(Role::User, "alice", 1);
            req.groups = vec!["staff".into()];
            let (cert, _) = issue(dir.path(), dir.path(), &req).expect("issue");
            certs(&cert).expect("read").remove(0).as_ref().to_vec()
        };
    }

    #[test]
    fn identities_round_trip_and_bad_names_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        ca_init(dir.path(), 1).expect("ca");
        let mut req = Request::new(Role::Datanode, "dn-2", 1);
        req.hosts = vec!["127.0.0.1".into(), "dn2.example".into()];
        let (cert, _) = issue(dir.path(), dir.path(), &req).expect("issue");
        assert_eq!(identity_of_file(&cert).expect("identity"), Identity { role: Role::Datanode, name: "dn-2".into(), groups: vec![] });
        for bad in ["", "a/b", "a b", "a:b", &"x".repeat(256)] {
            assert!(issue(dir.path(), dir.path(), &Request::new(Role::User, bad, 1)).is_err(), "name {bad:?}");
        }
        let mut backwards = Request::new(Role::User, "late", 1);
        backwards.not_after = backwards.not_before;
        assert!(issue(dir.path(), dir.path(), &backwards).is_err());
        assert!(identity_of(b"not a certificate").is_err());
    }
}
