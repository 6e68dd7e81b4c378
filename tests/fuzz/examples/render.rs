//! Print what the `domain_xml` target sees for one input: the profile, or the error.
//!
//!     cargo run --release --example render -- corpus/domain_xml/h02-hostile-paths.xml

fn main() {
    let path = std::env::args().nth(1).expect("usage: render <domain.xml>");
    let xml = std::fs::read(&path).expect("read input");
    match virt_aa_hook_fuzz::generate(&xml) {
        Ok(g) => {
            for w in &g.derived.warnings {
                eprintln!("warning: {w}");
            }
            print!("{}", g.profile);
            virt_aa_hook_fuzz::check_generated(&g);
        }
        Err(e) => {
            println!("error: {e}");
            virt_aa_hook_fuzz::check_domain_xml(&xml);
        }
    }
}
