//! `kismatic completions SHELL` and `kismatic man DIR`: shell completions and man pages generated from the same
//! command definitions as `--help`, so they never drift from the binary.
use anyhow::Context;
use clap::CommandFactory;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

#[derive(clap::Args)]
#[command(after_help = "\
Install: bash: kismatic completions bash > /etc/bash_completion.d/kismatic (or ~/.local/share/bash-completion/\
completions/kismatic); zsh: kismatic completions zsh > \"${fpath[1]}/_kismatic\"; fish: kismatic completions fish > \
~/.config/fish/completions/kismatic.fish. Open a new shell afterwards.")]
pub struct CompletionsArgs {
    /// The shell to complete for; the script is printed on standard output.
    #[arg(value_enum)]
    pub shell: Shell,
}

#[derive(clap::Args)]
#[command(
    after_help = "Install: kismatic man /usr/local/share/man/man1 && mandb -q; then man kismatic-upgrade-online."
)]
pub struct ManArgs {
    /// Folder to write the pages to (created if missing): kismatic.1 and one page per command, e.g.
    /// kismatic-upgrade-online.1.
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
}

pub fn completions(args: CompletionsArgs) -> anyhow::Result<ExitCode> {
    let mut cmd = crate::Cli::command();
    let shell = match args.shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "kismatic", &mut out);
    crate::write_stdout(&out)?;
    Ok(ExitCode::SUCCESS)
}

/// One page per command and subcommand (`kismatic-upgrade-online.1`), each naming the kismatic version.
fn write_pages(cmd: &clap::Command, dir: &std::path::Path) -> std::io::Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(sub, dir)?;
    }
    clap_mangen::Man::new(cmd.clone())
        .source(format!("kismatic {}", env!("CARGO_PKG_VERSION")))
        .manual("kismatic manual")
        .generate_to(dir)
        .map(|_| ())
}

pub fn man(args: ManArgs) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(&args.dir).with_context(|| format!("cannot create {}", args.dir.display()))?;
    let mut cmd = crate::Cli::command().disable_help_subcommand(true);
    cmd.build();
    write_pages(&cmd, &args.dir).with_context(|| format!("cannot write man pages to {}", args.dir.display()))?;
    let mut pages: Vec<String> = std::fs::read_dir(&args.dir)
        .with_context(|| format!("cannot list {}", args.dir.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("kismatic") && n.ends_with(".1"))
        .collect();
    pages.sort();
    crate::outln!("wrote {} man page(s) to {}: {}", pages.len(), args.dir.display(), pages.join(" "));
    Ok(ExitCode::SUCCESS)
}
