//! Print what the plan crate makes of a plan file: `cargo run -p kismatic-plan --example check_plan -- FILE`.
use std::path::PathBuf;

fn main() {
    let mut failed = false;
    for arg in std::env::args().skip(1) {
        let path = PathBuf::from(arg);
        match kismatic_plan::load_plan(&path) {
            Ok((plan, inv)) => {
                for w in &plan.warnings {
                    println!("warning: {w}");
                }
                println!("{inv:#?}");
            }
            Err(e) => {
                failed = true;
                println!("{e}");
            }
        }
    }
    if failed {
        std::process::exit(1);
    }
}
