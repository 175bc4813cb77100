//! The command line, read the same way by every program of the project
//! (relay, ctl, sidecars): `--help` prints the usage on stdout and exits 0; a
//! command line that cannot be used prints argh's message and a hint on
//! stderr and exits [`EXIT_USAGE`].

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use argh::FromArgs;

/// Exit code of every program for a command line (or environment) it cannot use.
pub const EXIT_USAGE: u8 = 2;

/// Parses this process's arguments into `T`. `name` is the program's name in
/// the usage text when `argv[0]` is missing; otherwise `argv[0]`'s file name.
/// `Err` carries the exit code once the usage or the mistake is printed.
pub fn parse_args<T: FromArgs>(name: &str) -> Result<T, ExitCode> {
    let argv: Vec<String> = std::env::args().collect();
    let name = argv
        .first()
        .and_then(|a| a.rsplit('/').next())
        .filter(|n| !n.is_empty())
        .unwrap_or(name);
    let rest: Vec<&str> = argv.iter().skip(1).map(String::as_str).collect();
    parse(name, &rest).map_err(|(out, code)| {
        if code == 0 {
            // Not println!: a closed pipe (`--help | head`) is no panic.
            let _ = writeln!(std::io::stdout(), "{out}");
            ExitCode::SUCCESS
        } else {
            eprintln!("{out}");
            ExitCode::from(code)
        }
    })
}

/// The parse itself: the value, or what to print and the exit code.
fn parse<T: FromArgs>(name: &str, args: &[&str]) -> Result<T, (String, u8)> {
    T::from_args(&[name], args).map_err(|early| match early.status {
        Ok(()) => (early.output, 0),
        Err(()) => (
            format!("{}\nRun {name} --help for usage.", early.output.trim_end()),
            EXIT_USAGE,
        ),
    })
}

/// A duration as people type it: `90s`, `10m`, `2h`, `1d`, `1h30m`,
/// `600000ms` (humantime's units, run together or spaced). A bare number is
/// refused with a hint to add a unit: whether it means seconds or
/// milliseconds is each program's own word.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|e| e.to_string())
}

/// A sidecar's own log lines on standard error (`TIME LEVEL message`),
/// keeping standard output for what the program produces; only records
/// whose target starts with `target` (the sidecar's crate) are written,
/// so the libraries' chatter stays out.
pub struct StderrLog {
    pub target: &'static str,
}

impl log::Log for StderrLog {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record) {
        use std::io::Write;
        if self.enabled(record.metadata()) && record.target().starts_with(self.target) {
            let now = humantime::format_rfc3339_millis(std::time::SystemTime::now());
            let _ = writeln!(
                std::io::stderr().lock(),
                "{now} {:<5} {}",
                record.level(),
                record.args()
            );
        }
    }

    fn flush(&self) {}
}

/// Installs `logger` at `level`; a second call keeps the first logger.
pub fn log_to_stderr(logger: &'static StderrLog, level: log::LevelFilter) {
    log::set_max_level(level);
    let _ = log::set_logger(logger);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// try-cli: a test program.
    #[derive(FromArgs, Debug)]
    struct Args {
        /// a number
        #[argh(option)]
        count: u32,
    }

    #[test]
    fn help_exits_zero_and_mistakes_exit_with_the_usage_code() {
        let ok: Args = parse("try-cli", &["--count", "3"]).unwrap();
        assert_eq!(ok.count, 3);
        let (help, code) = parse::<Args>("try-cli", &["--help"]).unwrap_err();
        assert_eq!(code, 0);
        assert!(help.contains("Usage: try-cli --count <count>"), "{help}");
        let (msg, code) = parse::<Args>("try-cli", &["--count", "x"]).unwrap_err();
        assert_eq!(code, EXIT_USAGE);
        assert!(msg.ends_with("Run try-cli --help for usage."), "{msg}");
    }

    #[test]
    fn durations_read_as_people_write_them() {
        let secs = |text| parse_duration(text).map(|d| d.as_secs());
        assert_eq!(secs("90s"), Ok(90));
        assert_eq!(secs("10m"), Ok(600));
        assert_eq!(secs("2h"), Ok(7200));
        assert_eq!(secs("1d"), Ok(86_400));
        assert_eq!(secs("1h30m"), Ok(5400));
        assert_eq!(secs(" 1h 30m "), Ok(5400));
        assert_eq!(secs("600000ms"), Ok(600));
        let bare = parse_duration("600000").unwrap_err();
        assert!(bare.contains("unit"), "{bare}");
        assert!(parse_duration("10x")
            .unwrap_err()
            .contains("unknown time unit"));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("-5m").is_err());
    }
}
