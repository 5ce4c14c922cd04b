//! kube-sim: a simulated Kubernetes node agent (kubelet and proxy) for a real control plane (test and demo
//! infrastructure).

mod client;
mod config;
mod health;
mod kubelet;
mod meta;
mod proxy;
mod tls;
mod version;

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "kube-sim", version = version::current(), about = "Simulated Kubernetes node agent: kubelet and proxy")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Register a Node, heartbeat, and run the pods bound to it.
    Kubelet {
        #[arg(long)]
        config: PathBuf,
    },
    /// A versioned service with a health endpoint, in kube-proxy's place.
    Proxy {
        #[arg(long)]
        config: PathBuf,
    },
    /// Print this artifact's version.
    Version {
        #[arg(long)]
        json: bool,
    },
    /// Copy the kube-sim binary IN to OUT with VERSION written into its reserved version region.
    Stamp {
        #[arg(long)]
        version: String,
        input: PathBuf,
        output: PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Version { json } => {
            if json {
                println!("{}", version::info());
            } else {
                println!("{}", version::current());
            }
            return Ok(());
        }
        Cmd::Stamp { version: v, input, output } => {
            version::stamp_file(&input, &output, &v)?;
            return Ok(());
        }
        _ => {}
    }
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    tls::install_crypto_provider();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(async move {
        match cli.cmd {
            Cmd::Kubelet { config } => kubelet::run(config::load(&config)?).await,
            Cmd::Proxy { config } => proxy::run(config::load(&config)?).await,
            Cmd::Version { .. } | Cmd::Stamp { .. } => Ok(()),
        }
    })
}
