//! Writes a synthetic facts document: `gen_facts NODES PODS OUT.json` (used by benches/whole-run.sh).
use std::io::Write;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let nodes: usize = args.get(1).map_or(Ok(5000), |s| s.parse())?;
    let pods: usize = args.get(2).map_or(Ok(150_000), |s| s.parse())?;
    let out = args.get(3).map_or("facts.json", String::as_str);
    let facts = kismatic_core::synth::generate(nodes, pods);
    let mut f = std::io::BufWriter::new(std::fs::File::create(out)?);
    serde_json::to_writer(&mut f, &facts)?;
    f.flush()?;
    eprintln!(
        "wrote {out}: {} nodes, {} pods",
        facts.inventory.nodes.len(),
        facts.kube.as_ref().map_or(0, |k| k.pods.len())
    );
    Ok(())
}
