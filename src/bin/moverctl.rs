//! `moverctl`: the management client. Argument parsing and wiring only.

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use lpar_mover::cli::bench::{self, BenchArgs};
use lpar_mover::cli::console::{self, ConsoleArgs};
use lpar_mover::cli::ctl;
use lpar_mover::cli::demo::{self, DemoArgs};
use lpar_mover::cli::selftest::{self, SelftestArgs};

#[derive(Parser)]
#[command(
    name = "moverctl",
    version,
    about = "Drive lpar-mover agents: move LPARs between hosts"
)]
struct Cli {
    #[command(flatten)]
    global: lpar_mover::cli::session::Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    #[command(flatten)]
    Agent(ctl::CtlCommand),
    /// Migrate the default LPAR live between two agents on this machine.
    Demo(DemoArgs),
    /// Repeat the demo's migration: median and spread of every figure.
    Bench(BenchArgs),
    /// Create a default LPAR on this machine, run its guest program under
    /// dirty tracking, and print what each harvest reports.
    Selftest(SelftestArgs),
    /// Print the build identity agents compare before a migration.
    Version,
    /// Serve the operator's console: a web page for hosts, LPARs and
    /// live migrations, in front of the listed agents.
    Console(ConsoleArgs),
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    // Usage errors exit 3 (clap's own help and version output exits 0).
    let usage = |e: clap::Error| -> ! {
        let _ = e.print();
        std::process::exit(if e.use_stderr() { 3 } else { 0 })
    };
    let matches = Cli::command()
        .try_get_matches()
        .unwrap_or_else(|e| usage(e));
    let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| usage(e));
    if let (Command::Console(args), Some(m)) =
        (&mut cli.command, matches.subcommand_matches("console"))
    {
        // `--agent` is also moverctl's global option, with a default: the
        // console's agents are only those named (or MOVER_AGENT's).
        args.agents_given =
            m.value_source("agent") != Some(clap::parser::ValueSource::DefaultValue);
    }
    if let Err(e) = cli.global.tls.install() {
        eprintln!("{e}");
        std::process::exit(3);
    }
    let result = match cli.command {
        Command::Agent(c) => ctl::run(&cli.global, c).or_else(|f| {
            f.print(cli.global.json);
            std::process::exit(f.exit_code())
        }),
        Command::Demo(args) => demo::run(&args),
        Command::Bench(args) => bench::run(&args),
        Command::Selftest(args) => selftest::run(&args),
        Command::Console(args) => console::run(&args, cli.global.token_file.as_deref()),
        Command::Version => {
            println!("{}", lpar_mover::build_identity::BuildIdentity::current());
            Ok(())
        }
    };
    if let Err(e) = result {
        eprintln!("{e}");
        std::process::exit(1);
    }
}
