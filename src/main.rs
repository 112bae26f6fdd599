//! `mft` command line (skeleton; the CLI is being built).
fn main() {}
