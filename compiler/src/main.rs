//! The `kiln` command-line tool: check, print and run `.kir` graphs. See `kiln --help`.
//!
//! Every user error (bad file, bad flag, bad input) ends the process with exit code 1 and an `error: ...` message on
//! stderr, usage errors found by clap included. A panic (exit 101) is a bug in Kiln, never a user error.

mod cli;

use clap::error::ErrorKind;
use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = match cli::Cli::try_parse() {
        Ok(args) => args,
        Err(e) => {
            // `--help` and `--version` are not errors; clap prints them to stdout.
            let ok = matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion);
            // Printing fails only if stdout/stderr are closed, and then there is no one left to tell.
            let _ = e.print();
            return if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            };
        }
    };
    match cli::execute(args) {
        // A closed stdout is not an error: the command finished its work and only stopped printing (`cli::Printer`).
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            cli::note(format_args!("{}", error.render()));
            ExitCode::FAILURE
        }
    }
}
