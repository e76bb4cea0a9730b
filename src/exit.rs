//! Exit codes: one enum, so scripts can rely on them (as fd's `exit_codes.rs`).

use std::process::ExitCode;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Every input succeeded.
    Success,
    /// The run finished but some inputs failed.
    SomeFailed,
    /// Usage or configuration error: bad flag, missing key, unreachable backend, unwritable output.
    Config,
    /// Interrupted by SIGINT; finished records were kept.
    Interrupted,
    /// Another run is writing the same report (EX_TEMPFAIL): try again later, or `--wait-lock`.
    Busy,
}

impl Exit {
    pub fn code(self) -> u8 {
        match self {
            Exit::Success => 0,
            Exit::SomeFailed => 1,
            Exit::Config => 2,
            Exit::Interrupted => 130,
            Exit::Busy => 75,
        }
    }

    /// The exit of a finished run: an interrupt wins over failures, a config error over both.
    pub fn of_run(failed: usize, interrupted: bool, config_error: bool) -> Exit {
        if config_error {
            Exit::Config
        } else if interrupted {
            Exit::Interrupted
        } else if failed > 0 {
            Exit::SomeFailed
        } else {
            Exit::Success
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        assert_eq!(Exit::of_run(0, false, false).code(), 0);
        assert_eq!(Exit::of_run(3, false, false).code(), 1);
        assert_eq!(Exit::of_run(3, true, false).code(), 130);
        assert_eq!(Exit::of_run(0, true, true).code(), 2);
    }
}
