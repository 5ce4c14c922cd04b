//! Whole run from a facts file, as `kismatic upgrade online --dry-run --facts FILE -o json` does it (minus the
//! release loading): `whole_run FILE [parse-only]`. Used by benches/whole-run.sh for time and peak memory.
use kismatic_core::checks::{CheckOptions, Mode, analyze};
use kismatic_core::facts::Facts;
use kismatic_core::planner::{PlanOptions, plan};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let path = args.get(1).ok_or("usage: whole_run FILE [parse-only]")?;
    let file = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(path)?);
    let facts: Facts = serde_json::from_reader(file)?;
    if args.get(2).is_some_and(|a| a == "parse-only") {
        eprintln!("parsed {} pods", facts.kube.as_ref().map_or(0, |k| k.pods.len()));
        return Ok(());
    }
    let release = kismatic_core::synth::release();
    let t = std::time::Instant::now();
    let a = analyze(&facts, &release, &CheckOptions::new(Mode::Online))?;
    let t_an = t.elapsed();
    let p = plan(&facts, &a, &release, &PlanOptions { partial_ok: true, ..PlanOptions::new(Mode::Online) });
    let t_pl = t.elapsed();
    let out = kismatic_core::render::plan_json(&p);
    eprintln!("analysis {t_an:?}, +planning {t_pl:?}, +render {:?}", t.elapsed());
    eprintln!("{} findings, {} pruned, {} bytes of plan JSON", a.findings.len(), p.pruned.len(), out.len());
    Ok(())
}
