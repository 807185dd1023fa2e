//! The `isthmus` binary: parse Envoy-style flags, load the bootstrap, serve (or validate, or
//! run the demo).
#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use proxy::app::{self, Options};
use proxy::cli::{Cli, Command, Mode};
use proxy::config::{load, Bootstrap};

fn main() -> ExitCode {
    let cli = Cli::parse();
    proxy::telemetry::logging::init(&cli.log_level);
    if let Some(Command::Demo { seconds, rate }) = cli.command {
        return runtime(cli.concurrency).map_or(ExitCode::FAILURE, |rt| rt.block_on(proxy::demo::run(seconds, rate)));
    }
    // Conversion is pure; building reads certificates and makes the TLS contexts, so
    // `--mode validate` refuses a bad certificate file as start-up would.
    let snapshot = match load_config(&cli).and_then(proxy::build::snapshot) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    if cli.mode == Mode::Validate {
        println!(
            "configuration '{}' OK",
            cli.config_path.as_ref().map_or("--config-yaml".into(), |p| p.display().to_string())
        );
        return ExitCode::SUCCESS;
    }
    let Some(rt) = runtime(cli.concurrency) else { return ExitCode::FAILURE };
    proxy::l4::splice::set_enabled(!cli.l4_copy);
    proxy::telemetry::series::set_expiry(Duration::from_secs(cli.stats_expiry_s));
    let opts = Options {
        drain_time: Duration::from_secs(cli.drain_time_s),
        readiness: cli.readiness_address,
        command_line: cli.options_json(),
    };
    let code = rt.block_on(async move {
        let signals = app::Signals::install();
        match app::start(snapshot, opts).await {
            Ok(running) => {
                running.run_until_signal(signals).await;
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        }
    });
    // Connections still open when the drain time ran out are cut here, when the runtime drops
    // their tasks; each one's drop-time access-log line is queued only then, after the drain's
    // own flush, so flush once more or the process would exit with those lines unwritten.
    rt.shutdown_timeout(Duration::from_secs(1));
    proxy::telemetry::log_writer::flush(Duration::from_secs(2));
    code
}

fn load_config(cli: &Cli) -> Result<Bootstrap, proxy::config::ConfigError> {
    if cli.config_path.is_none() && cli.config_yaml.is_none() {
        return Err(proxy::config::ConfigError::field(
            "command line",
            "a config is required: -c <file> or --config-yaml <text>",
        ));
    }
    let mut b =
        load::load_with(cli.config_path.as_deref(), cli.config_yaml.as_deref(), cli.allow_unknown_static_fields)?;
    proxy::config::node_env::apply(&mut b, |k| std::env::var(k).ok(), std::env::vars());
    if let Some(n) = &cli.service_node {
        b.node.id = n.clone();
    }
    if let Some(c) = &cli.service_cluster {
        b.node.cluster = c.clone();
    }
    if let Some(z) = &cli.service_zone {
        b.node.locality.zone = z.clone();
    }
    Ok(b)
}

fn runtime(concurrency: Option<usize>) -> Option<tokio::runtime::Runtime> {
    let workers =
        concurrency.filter(|n| *n > 0).unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    match tokio::runtime::Builder::new_multi_thread().worker_threads(workers).enable_all().build() {
        Ok(rt) => Some(rt),
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            None
        }
    }
}
