//! `testbed up|status|kubeconfig|down|node-stop|node-start|sample -f PLAN`: a real cluster in a box for demos and
//! end-to-end tests.

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use testbed::{Options, Testbed};

#[derive(Parser)]
#[command(name = "testbed", about = "Kismatic testbed: a real cluster in a box, driven by a plan file")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(clap::Args)]
struct Common {
    /// The Kismatic plan file
    #[arg(short = 'f', long = "plan")]
    plan: PathBuf,
    /// Where images, releases and testbed state live
    #[arg(long, env = "KISMATIC_TESTBED_DIR", default_value = testbed::testbed::DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build (or check) the testbed of a plan
    Up {
        #[command(flatten)]
        common: Common,
        /// The kube-sim binary, the node agent (default: next to this executable)
        #[arg(long, env = "KUBE_SIM")]
        kube_sim: Option<PathBuf>,
        /// The real control plane's build folder (default: `scripts/build-kubernetes.sh --cached`)
        #[arg(long, env = "KISMATIC_KUBERNETES")]
        kubernetes: Option<PathBuf>,
        /// Debian mirror for the base image (default: this machine's apt mirror)
        #[arg(long)]
        mirror: Option<String>,
        /// Keep what a failed `up` built, for debugging
        #[arg(long)]
        keep_on_failure: bool,
    },
    /// Show nodes, etcd health, load balancer and handed-out files
    Status {
        #[command(flatten)]
        common: Common,
        /// JSON output
        #[arg(long)]
        json: bool,
    },
    /// Print the path of the kubeconfig (admin client certificate)
    Kubeconfig {
        #[command(flatten)]
        common: Common,
    },
    /// Stop and remove everything the testbed of a plan started and wrote
    Down {
        #[command(flatten)]
        common: Common,
    },
    /// Fault injection: stop one node's container, keeping its files (the node goes away)
    NodeStop {
        #[command(flatten)]
        common: Common,
        /// The node's host name in the plan
        host: String,
        /// SIGKILL at once (a power cut) instead of an orderly halt
        #[arg(long)]
        kill: bool,
    },
    /// Start a node stopped by node-stop again and wait for it to boot
    NodeStart {
        #[command(flatten)]
        common: Common,
        /// The node's host name in the plan
        host: String,
    },
    /// Sample every PodDisruptionBudget's healthy pods and the API's answers through the load balancer until
    /// SIGTERM or SIGINT, then print the fewest healthy pods per budget and the failed samples (exit 1 when a
    /// budget had fewer healthy pods than it desires)
    Sample {
        #[command(flatten)]
        common: Common,
        /// Milliseconds between samples
        #[arg(long, default_value_t = 250, value_parser = clap::value_parser!(u64).range(10..=60_000))]
        interval_ms: u64,
        /// Also write the summary as JSON to this file
        #[arg(long)]
        json: Option<PathBuf>,
    },
}

/// Blocks until SIGTERM or SIGINT.
fn wait_for_termination() -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        Ok(())
    })
}

fn options(common: &Common) -> Options {
    Options { state_dir: common.state_dir.clone(), ..Options::default() }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Cmd::Up { common, kube_sim, kubernetes, mirror, keep_on_failure } => {
            let opts = Options {
                kube_sim: kube_sim.or_else(|| Options::default().kube_sim),
                kubernetes,
                mirror,
                keep_on_failure,
                ..options(&common)
            };
            Testbed::open(&common.plan, opts)?.up()?;
        }
        Cmd::Status { common, json } => {
            let s = Testbed::open(&common.plan, options(&common))?.status()?;
            let mut text = String::new();
            macro_rules! out {
                ($($a:tt)*) => {{
                    let _ = writeln!(text, $($a)*);
                }};
            }
            if json {
                out!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                out!("testbed {}: {}", s.cluster, if s.up { "up" } else { "not up" });
                for n in &s.nodes {
                    out!("  {:<12} {:<14} {:<22} {}", n.host, n.ip, n.roles.join(","), n.system);
                }
                for (c, h) in &s.etcd {
                    out!("  {c}: {h}");
                }
                if let Some(lb) = &s.load_balancer {
                    out!("  load balancer {lb}");
                }
                out!("  known_hosts {}", s.known_hosts.display());
                if let Some(k) = &s.kubeconfig {
                    out!("  kubeconfig {}", k.display());
                }
                if let (Some(o), Some(n)) = (&s.release_old, &s.release_new) {
                    out!("  releases: installed {} ; next {}", o.display(), n.display());
                }
            }
            // A closed pipe (`| head`) is not an error worth a panic.
            let _ = std::io::stdout().write_all(text.as_bytes());
            if !s.up {
                return Ok(ExitCode::from(3));
            }
        }
        Cmd::Kubeconfig { common } => {
            let tb = Testbed::open(&common.plan, options(&common))?;
            let p = tb.kubeconfig_path();
            if !p.exists() {
                anyhow::bail!("no kubeconfig: the testbed of {} is not up", common.plan.display());
            }
            let _ = writeln!(std::io::stdout(), "{}", p.display());
        }
        Cmd::Down { common } => {
            Testbed::open(&common.plan, options(&common))?.down()?;
        }
        Cmd::NodeStop { common, host, kill } => {
            let tb = Testbed::open(&common.plan, options(&common))?;
            if kill { tb.kill_node(&host)? } else { tb.stop_node(&host)? }
        }
        Cmd::NodeStart { common, host } => {
            Testbed::open(&common.plan, options(&common))?.start_node(&host)?;
        }
        Cmd::Sample { common, interval_ms, json } => {
            let tb = Testbed::open(&common.plan, options(&common))?;
            let sampler = testbed::sample::Sampler::start(&tb.kubeconfig_path(), Duration::from_millis(interval_ms));
            wait_for_termination()?;
            let summary = sampler.finish()?;
            if let Some(path) = json {
                std::fs::write(&path, serde_json::to_string_pretty(&summary)?)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            }
            let _ = std::io::stdout().write_all(summary.report().as_bytes());
            if summary.breach_count > 0 {
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
