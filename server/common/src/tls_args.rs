//! The TLS flags every server role takes (`stratos scm`, `stratos datanode`; the OM has the
//! same three in its configuration file as well).

use std::path::PathBuf;

#[derive(clap::Args, Debug, Clone, Default)]
pub struct TlsArgs {
    /// TLS on every link of this node: the cluster CA's certificate (PEM; `stratos admin ca
    /// init`). With --tls-cert and --tls-key, every peer must present a certificate of this CA.
    #[arg(long)]
    pub tls_ca: Option<PathBuf>,
    /// This node's certificate (PEM; `stratos admin cert issue --role ROLE`).
    #[arg(long)]
    pub tls_cert: Option<PathBuf>,
    /// This node's private key (PEM).
    #[arg(long)]
    pub tls_key: Option<PathBuf>,
}

impl TlsArgs {
    /// The node's TLS for `role`, loaded (None: plain TCP); an error names the file to fix.
    pub fn load(&self, role: crate::tls::Role) -> Result<Option<crate::tls::NodeTls>, crate::tls::TlsError> {
        crate::tls::files_of(self.tls_ca.as_deref(), self.tls_cert.as_deref(), self.tls_key.as_deref())?.map(|f| crate::tls::NodeTls::load(&f, role)).transpose()
    }
}
