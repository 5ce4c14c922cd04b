//! Keys and certificates: a testbed CA (openssl), TLS certificates with IP SANs, SSH keys (ssh-keygen).
//! openssl and ssh-keygen are on every Debian machine and keep the build free of a crypto stack.

use crate::util::{mkdir, run, write_file};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Ca {
    pub dir: PathBuf,
}

/// A key pair and certificate in PEM files.
#[derive(Debug, Clone)]
pub struct Cert {
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub enum Usage {
    /// Server and client authentication: etcd members use one certificate for clients and peers.
    ServerClient,
    Client,
}

impl Ca {
    pub fn cert(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// Creates the CA in `dir` unless it exists.
    pub fn ensure(dir: &Path, name: &str) -> Result<Ca> {
        mkdir(dir)?;
        let ca = Ca { dir: dir.to_path_buf() };
        let key = dir.join("ca.key");
        if !ca.cert().exists() || !key.exists() {
            gen_key(&key)?;
            run(Command::new("openssl")
                .args(["req", "-x509", "-new", "-sha256", "-days", "3650", "-key"])
                .arg(&key)
                .args(["-subj", &format!("/CN=kismatic-testbed-ca-{name}")])
                .args(["-addext", "basicConstraints=critical,CA:TRUE"])
                .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"])
                .arg("-out")
                .arg(ca.cert()))
            .context("cannot create the testbed CA")?;
        }
        Ok(ca)
    }

    /// Issues (or reuses) `<name>.crt`/`<name>.key` signed by this CA.
    pub fn issue(&self, name: &str, subject: &str, ips: &[&str], dns: &[&str], usage: Usage) -> Result<Cert> {
        let cert = Cert { cert: self.dir.join(format!("{name}.crt")), key: self.dir.join(format!("{name}.key")) };
        if cert.cert.exists() && cert.key.exists() {
            return Ok(cert);
        }
        gen_key(&cert.key)?;
        let csr = self.dir.join(format!("{name}.csr"));
        run(Command::new("openssl")
            .args(["req", "-new", "-key"])
            .arg(&cert.key)
            .args(["-subj", subject, "-out"])
            .arg(&csr))?;
        let mut sans: Vec<String> = ips.iter().map(|i| format!("IP:{i}")).collect();
        sans.extend(dns.iter().map(|d| format!("DNS:{d}")));
        let mut ext = String::from("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n");
        ext.push_str(match usage {
            Usage::ServerClient => "extendedKeyUsage=serverAuth,clientAuth\n",
            Usage::Client => "extendedKeyUsage=clientAuth\n",
        });
        if !sans.is_empty() {
            ext.push_str(&format!("subjectAltName={}\n", sans.join(",")));
        }
        let extfile = self.dir.join(format!("{name}.ext"));
        write_file(&extfile, ext, 0o644)?;
        run(Command::new("openssl")
            .args(["x509", "-req", "-sha256", "-days", "3650", "-in"])
            .arg(&csr)
            .arg("-CA")
            .arg(self.cert())
            .arg("-CAkey")
            .arg(self.dir.join("ca.key"))
            .arg("-CAserial")
            .arg(self.dir.join("ca.srl"))
            .arg("-CAcreateserial")
            .arg("-extfile")
            .arg(&extfile)
            .arg("-out")
            .arg(&cert.cert))
        .with_context(|| format!("cannot sign certificate {name}"))?;
        let _ = std::fs::remove_file(csr);
        let _ = std::fs::remove_file(extfile);
        Ok(cert)
    }
}

fn gen_key(path: &Path) -> Result<()> {
    run(Command::new("openssl")
        .args(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out"])
        .arg(path))?;
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    Ok(())
}

/// Creates an ed25519 key at `path` (no passphrase) unless one exists; returns the public key line.
pub fn ssh_key(path: &Path, comment: &str) -> Result<String> {
    if !path.exists() {
        if let Some(p) = path.parent() {
            mkdir(p)?;
        }
        run(Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"]).arg(path))
            .with_context(|| format!("cannot create SSH key {}", path.display()))?;
    }
    let public = run(Command::new("ssh-keygen").arg("-y").arg("-f").arg(path))
        .with_context(|| format!("cannot read SSH key {}", path.display()))?;
    Ok(public.trim().to_string())
}

/// A bare key pair `<name>.key` / `<name>.pub` in `dir` (the service-account signing key), made unless present.
pub fn key_pair(dir: &Path, name: &str) -> Result<Cert> {
    let pair = Cert { cert: dir.join(format!("{name}.pub")), key: dir.join(format!("{name}.key")) };
    if !pair.cert.exists() || !pair.key.exists() {
        mkdir(dir)?;
        gen_key(&pair.key)?;
        run(Command::new("openssl").arg("pkey").arg("-in").arg(&pair.key).arg("-pubout").arg("-out").arg(&pair.cert))
            .with_context(|| format!("cannot write the public key of {name}"))?;
    }
    Ok(pair)
}
