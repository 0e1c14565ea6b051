//! Logging as etcd's flags ask for it:
//! 1. `--logger` is checked: `zap` (etcd 3.5's only logger), or etcd 3.4's
//!    `capnslog`, taken as `zap` with a warning (a 3.4 command line runs
//!    unchanged); anything else is refused with etcd's error.
//! 2. `--log-outputs` are opened: `default` and `stderr` are standard
//!    error (etcd's `default` is journald under systemd, stderr otherwise),
//!    `stdout` standard output, anything else a file, created or appended
//!    to. Every event is written whole to every output.
//! 3. `--log-format` picks the line format: `text` is tracing's (colored on
//!    a terminal); `json` is one object per line with zap's field names
//!    where they map ([`EtcdJson`]).
//! 4. `--log-level` (or `RUST_LOG`, which wins) filters events; a level
//!    zap does not know is refused, as etcd refuses it.

use std::io::Write;
use std::sync::Arc;

use tracing::field::{Field, Visit};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

use crate::config::{Config, LogFormat};

/// Why logging could not be set up (the member does not start).
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    /// etcd's text for a `--logger` it does not know.
    #[error("unknown logger option {0:?}")]
    UnknownLogger(String),
    /// etcd 3.4's text (it panics with it) for a `--log-level` zap lacks.
    #[error("unknown level {0:?}")]
    UnknownLevel(String),
    /// etcd's text for an output it cannot open.
    #[error("open sink {path:?}: {source}")]
    Open {
        path: String,
        source: std::io::Error,
    },
}

/// One `--log-outputs` target.
#[derive(Debug)]
enum Output {
    Stdout,
    Stderr,
    File(std::fs::File),
}

/// Every output, shared by the threads that log.
#[derive(Debug, Clone)]
struct Outputs(Arc<[Output]>);

impl Outputs {
    /// Step 2.
    fn open(names: &[String]) -> Result<Self, LoggingError> {
        let mut outputs = Vec::new();
        let mut seen = Vec::new();
        for name in names.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
            let name = if name == "default" { "stderr" } else { name };
            if seen.contains(&name) {
                continue;
            }
            seen.push(name);
            outputs.push(match name {
                "stderr" => Output::Stderr,
                "stdout" => Output::Stdout,
                path => Output::File(
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path)
                        .map_err(|source| LoggingError::Open {
                            path: path.to_string(),
                            source,
                        })?,
                ),
            });
        }
        if outputs.is_empty() {
            outputs.push(Output::Stderr);
        }
        Ok(Self(outputs.into()))
    }

    /// Colors only when every output is a terminal.
    fn all_terminals(&self) -> bool {
        use std::io::IsTerminal;
        self.0.iter().all(|o| match o {
            Output::Stdout => std::io::stdout().is_terminal(),
            Output::Stderr => std::io::stderr().is_terminal(),
            Output::File(_) => false,
        })
    }
}

/// Writes one formatted event to every output.
struct OutputsWriter<'a>(&'a [Output]);

impl Write for OutputsWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.write_all(buf)?;
        Ok(buf.len())
    }

    /// tracing-subscriber hands over one whole event per call: each output
    /// gets it in one write (a file opened for appending keeps lines whole).
    /// A failing output does not keep the others from their copy.
    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        for output in self.0 {
            let _ = match output {
                Output::Stdout => std::io::stdout().lock().write_all(buf),
                Output::Stderr => std::io::stderr().lock().write_all(buf),
                Output::File(file) => (&*file).write_all(buf),
            };
        }
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Outputs {
    type Writer = OutputsWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        OutputsWriter(&self.0)
    }
}

/// Sets up the process's logging from the flags (steps 1 to 4). Returns
/// a warning to log once logging is up, if any.
pub fn init(config: &Config) -> Result<Option<String>, LoggingError> {
    let warning = match config.logger.as_str() {
        "zap" => None,
        "capnslog" => Some(
            "--logger=capnslog is deprecated (removed in etcd v3.5); logging with zap".to_string(),
        ),
        other => return Err(LoggingError::UnknownLogger(other.to_string())),
    };
    let levels = ["debug", "info", "warn", "error", "panic", "fatal"];
    if !levels.contains(&config.log_level.as_str()) {
        return Err(LoggingError::UnknownLevel(config.log_level.clone()));
    }
    let outputs = Outputs::open(&config.log_outputs)?;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(config.tracing_filter()));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(outputs.all_terminals())
        .with_writer(outputs);
    match config.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.event_format(EtcdJson).init(),
    }
    Ok(warning)
}

/// zap's JSON lines, as etcd writes them: `level` (lowercase), `ts`
/// (ISO 8601, UTC, milliseconds), `caller` (`<crate>/<file>:<line>`, as
/// zap's short caller is `<package>/<file>:<line>`), `msg`, then the
/// event's own fields. Span fields are left out (zap has no spans).
#[derive(Debug, Clone, Copy)]
pub struct EtcdJson;

impl<S, N> FormatEvent<S, N> for EtcdJson
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let meta = event.metadata();
        let mut fields = JsonFields::default();
        event.record(&mut fields);
        let level = match *meta.level() {
            tracing::Level::ERROR => "error",
            tracing::Level::WARN => "warn",
            tracing::Level::INFO => "info",
            tracing::Level::DEBUG | tracing::Level::TRACE => "debug",
        };
        let json = |v: &str| serde_json::Value::from(v).to_string();
        write!(
            writer,
            "{{\"level\":\"{level}\",\"ts\":\"{}\",\"caller\":{},\"msg\":{}",
            iso8601_utc(std::time::SystemTime::now()),
            json(&caller(meta)),
            json(&fields.message),
        )?;
        for (name, value) in &fields.rest {
            write!(writer, ",{}:{value}", json(name))?;
        }
        writeln!(writer, "}}")
    }
}

/// zap's short caller from an event's metadata: the crate (from the
/// target) and the file below its `src/`, with the line.
fn caller(meta: &tracing::Metadata<'_>) -> String {
    let krate = meta.target().split("::").next().unwrap_or_default();
    match (meta.file(), meta.line()) {
        (Some(file), Some(line)) => {
            let short = file.rsplit_once("/src/").map_or(file, |(_, f)| f);
            format!("{krate}/{short}:{line}")
        }
        _ => meta.target().to_string(),
    }
}

/// An event's fields: the message apart, the others as JSON values.
#[derive(Default)]
struct JsonFields {
    message: String,
    rest: Vec<(&'static str, serde_json::Value)>,
}

impl JsonFields {
    fn put(&mut self, field: &Field, value: serde_json::Value) {
        if field.name() == "message" {
            self.message = match value {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
        } else {
            self.rest.push((field.name(), value));
        }
    }
}

impl Visit for JsonFields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put(field, format!("{value:?}").into());
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.into());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.into());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.into());
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, value.to_string().into());
    }
}

/// `2026-12-07T23:28:31.548Z`: zap's ISO 8601 encoder in UTC.
fn iso8601_utc(time: std::time::SystemTime) -> String {
    let since = time
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since.as_secs();
    let (days, day_secs) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        day_secs / 3600,
        day_secs / 60 % 60,
        day_secs % 60,
        since.subsec_millis()
    )
}

/// The proleptic Gregorian date `days` after 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_zaps_iso8601() {
        let at = |secs: u64, millis: u64| {
            iso8601_utc(
                std::time::UNIX_EPOCH
                    + std::time::Duration::from_secs(secs)
                    + std::time::Duration::from_millis(millis),
            )
        };
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000Z");
        // `date -u -d @1796686111`: 2026-12-07 23:28:31 UTC.
        assert_eq!(at(1_796_686_111, 548), "2026-12-07T23:28:31.548Z");
        // A leap day.
        assert_eq!(at(951_782_400, 1), "2000-02-29T00:00:00.001Z");
    }

    #[test]
    fn outputs_follow_etcd_names() {
        let outputs = Outputs::open(&["default".into(), "stderr".into()]).unwrap();
        assert_eq!(outputs.0.len(), 1);
        assert!(matches!(outputs.0[0], Output::Stderr));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("oxcd.log");
        let outputs = Outputs::open(&["stdout".into(), path.display().to_string()]).unwrap();
        assert!(matches!(outputs.0[1], Output::File(_)));
        assert!(!outputs.all_terminals());
        let missing = dir.path().join("no/such/dir/x.log").display().to_string();
        assert!(Outputs::open(&[missing]).is_err());
    }

    #[test]
    fn unknown_loggers_get_etcds_error() {
        use clap::Parser;
        let config = Config::parse_from(["oxcd", "--logger=foo"]);
        let err = init(&config).unwrap_err();
        assert_eq!(err.to_string(), "unknown logger option \"foo\"");
        let config = Config::parse_from(["oxcd", "--log-level=loud"]);
        let err = init(&config).unwrap_err();
        assert_eq!(err.to_string(), "unknown level \"loud\"");
    }
}
