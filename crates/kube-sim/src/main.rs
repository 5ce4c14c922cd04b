//! kube-sim: a simulated Kubernetes control plane and kubelet on real etcd (test and demo infrastructure).

mod api;
mod client;
mod config;
mod ctrl;
mod etcd;
mod health;
mod kubelet;
mod leader;
mod meta;
mod proxy;
mod scheduler;
mod tls;
mod version;

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "kube-sim", version = version::current(), about = "Simulated Kubernetes control plane and kubelet on real etcd")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve the Kubernetes API (HTTPS, client certificates) backed by etcd.
    Apiserver {
        #[arg(long)]
        config: PathBuf,
    },
    /// Run the controllers (leader-elected).
    ControllerManager {
        #[arg(long)]
        config: PathBuf,
    },
    /// Bind pending pods to nodes (leader-elected).
    Scheduler {
        #[arg(long)]
        config: PathBuf,
    },
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
            Cmd::Apiserver { config } => api::run(config::load(&config)?).await,
            Cmd::ControllerManager { config } => ctrl::run(config::load(&config)?).await,
            Cmd::Scheduler { config } => scheduler::run(config::load(&config)?).await,
            Cmd::Kubelet { config } => kubelet::run(config::load(&config)?).await,
            Cmd::Proxy { config } => proxy::run(config::load(&config)?).await,
            Cmd::Version { .. } | Cmd::Stamp { .. } => Ok(()),
        }
    })
}
