//! `kismatic`: upgrades self-managed Kubernetes clusters safely. This crate is the thin edge: argument parsing,
//! rendering and exit codes. The work lives in the library crates.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

mod common;
mod docs;
mod facts;
mod info;
mod report;
mod status;
mod upgrade;

#[derive(Parser)]
#[command(name = "kismatic", version, about = "Upgrade self-managed Kubernetes clusters safely, node by node.")]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the version of the cluster and of every node, and drift between markers and what actually runs.
    Info(info::InfoArgs),
    /// Gather every fact the upgrade analysis reads (nodes, Kubernetes API, etcd) into one JSON document.
    Facts(facts::FactsArgs),
    /// Upgrade the cluster to the target release.
    #[command(subcommand)]
    Upgrade(upgrade::UpgradeCommand),
    /// Show the current or last upgrade run: where it is, what it did and left, and how to resume it.
    Status(status::StatusArgs),
    /// Write a run's timeline (a self-contained HTML page: Gantt chart, summary, findings) from its run folder.
    Report(report::ReportArgs),
    /// Print a shell completion script (bash, zsh or fish).
    Completions(docs::CompletionsArgs),
    /// Write the man pages (one per command) into a folder.
    Man(docs::ManArgs),
}

/// Writes to standard output. A closed pipe (`kismatic info | head -1`) ends the command the conventional way: killed
/// by SIGPIPE, nothing printed (Rust ignores SIGPIPE, so without this `print!` would panic with exit 101).
pub(crate) fn write_stdout(bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let text = String::from_utf8_lossy(bytes);
    let text = kismatic_plan::text::terminal(&text);
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => stdout_closed(),
        r => r.map_err(|e| anyhow::anyhow!("writing to standard output: {e}")),
    }
}

/// Like [`write_stdout`] for text that is only a courtesy (progress, a summary after the run finished): a closed or
/// failing standard output must not stop or spoil a running upgrade, so errors are dropped.
pub(crate) fn write_stdout_lossy(text: &str) {
    use std::io::Write;
    let text = kismatic_plan::text::terminal(text);
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

/// Standard output is a closed pipe: die of SIGPIPE, as `cat` and `grep` do, so the shell sees status 141.
fn stdout_closed() -> ! {
    // SAFETY: resetting SIGPIPE to its default disposition and raising it on this thread has no memory effects;
    // the process ends there.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        libc::raise(libc::SIGPIPE);
    }
    std::process::exit(128 + libc::SIGPIPE)
}

/// `print!` that ends quietly on a closed pipe (see [`write_stdout`]); other write errors end with status 2.
macro_rules! out {
    ($($arg:tt)*) => {
        if let Err(e) = $crate::write_stdout(format!($($arg)*).as_bytes()) {
            eprintln!("error: {e:#}");
            std::process::exit(2);
        }
    };
}
/// `println!` counterpart of [`out!`].
macro_rules! outln {
    ($($arg:tt)*) => {
        if let Err(e) = $crate::write_stdout(format!("{}\n", format_args!($($arg)*)).as_bytes()) {
            eprintln!("error: {e:#}");
            std::process::exit(2);
        }
    };
}
/// `println!` that never fails (see [`write_stdout_lossy`]).
macro_rules! outln_lossy {
    ($($arg:tt)*) => {
        $crate::write_stdout_lossy(&format!("{}\n", format_args!($($arg)*)))
    };
}
pub(crate) use {out, outln, outln_lossy};

/// The error and its causes, `: `-separated like `{:#}`, each cause once: many errors show their source in their
/// own message too ("cannot read X: No such file or directory"), and `{:#}` would then repeat it.
fn error_text(err: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if out.ends_with(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Info(args) => info::run(args),
        Command::Facts(args) => facts::run(args),
        Command::Upgrade(cmd) => upgrade::run(cmd),
        Command::Status(args) => status::run(args),
        Command::Report(args) => report::run(args),
        Command::Completions(args) => docs::completions(args),
        Command::Man(args) => docs::man(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {}", kismatic_plan::text::terminal(&error_text(&err)));
            ExitCode::from(2)
        }
    }
}
