//! `oxcdctl`: command-line client for oxcd and any etcd v3 server.
//!
//! 1. Parse the command line ([`ctl::Cli`]).
//! 2. Run the command on a multi-thread tokio runtime ([`ctl::run`]).
//! 3. Print any error to stderr and exit with status 1.

#[path = "../ctl/mod.rs"]
mod ctl;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = ctl::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: failed to start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(ctl::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e}");
            ExitCode::FAILURE
        }
    }
}
