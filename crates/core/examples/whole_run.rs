//! Whole run from a facts file, as `kismatic upgrade online --dry-run --facts FILE -o json` does it (minus the
//! release loading): `whole_run FILE [parse-only] [--via reader|slice]`. Used by benches/whole-run.sh for time and
//! peak memory.
//!
//! `--via reader` (the default) deserializes straight from a buffered file reader, so the text is never held in
//! memory whole: peak memory is the parsed facts plus a 1 MiB buffer. `--via slice` reads the file into memory,
//! parses with `from_slice` (faster per byte) and drops the text; its peak is the file plus the parsed facts.
//!
//! Prints on stderr the CPU time of each stage (the thread's on-CPU time from /proc, so a loaded machine does not
//! inflate it).
use kismatic_core::checks::{CheckOptions, Mode, analyze};
use kismatic_core::facts::Facts;
use kismatic_core::planner::{PlanOptions, plan};
use std::time::Duration;

/// On-CPU time of this thread (user + system), from `/proc/thread-self/schedstat`; zero when unavailable.
fn cpu() -> Duration {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|n| n.parse().ok()))
        .map_or(Duration::ZERO, Duration::from_nanos)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let path = args.get(1).ok_or("usage: whole_run FILE [parse-only] [--via reader|slice]")?;
    let parse_only = args.iter().any(|a| a == "parse-only");
    let via = args.iter().position(|a| a == "--via").and_then(|i| args.get(i + 1)).map_or("reader", String::as_str);
    let t0 = cpu();
    let facts: Facts = match via {
        "slice" => {
            let bytes = std::fs::read(path)?;
            serde_json::from_slice(&bytes)?
        }
        "reader" => {
            let file = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(path)?);
            serde_json::from_reader(file)?
        }
        other => return Err(format!("--via {other}: expected reader or slice").into()),
    };
    let t_parse = cpu() - t0;
    if parse_only {
        eprintln!(
            "parsed {} pods (via {via}): parse {:.3}s cpu",
            facts.kube.as_ref().map_or(0, |k| k.pods.len()),
            t_parse.as_secs_f64()
        );
        return Ok(());
    }
    let release = kismatic_core::synth::release();
    let t1 = cpu();
    let a = analyze(&facts, &release, &CheckOptions::new(Mode::Online))?;
    let t2 = cpu();
    let p = plan(&facts, &a, &release, &PlanOptions { partial_ok: true, ..PlanOptions::new(Mode::Online) });
    let t3 = cpu();
    let out = kismatic_core::render::plan_json(&p);
    let t4 = cpu();
    let s = |d: Duration| d.as_secs_f64();
    eprintln!(
        "cpu (via {via}): parse {:.3}s, analysis {:.3}s, planning {:.3}s, render {:.3}s; \
         (analysis+planning)/parse {:.2}, end-to-end/parse {:.2}",
        s(t_parse),
        s(t2 - t1),
        s(t3 - t2),
        s(t4 - t3),
        s(t3 - t1) / s(t_parse),
        s(t4 - t0) / s(t_parse)
    );
    eprintln!("{} findings, {} pruned, {} bytes of plan JSON", a.findings.len(), p.pruned.len(), out.len());
    Ok(())
}
