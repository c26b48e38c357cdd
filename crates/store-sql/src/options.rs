//! Checks of the stores' option values. Each error names the option (`SqliteOptions::busy_timeout`)
//! so that the server can say which configuration key to fix.

use std::time::Duration;

use wxlogin_domain::StoreError;

/// The longest duration a database setting in milliseconds takes: SQLite's busy timeout and
/// PostgreSQL's `statement_timeout` and `lock_timeout` are 32-bit signed milliseconds.
pub const MAX_MILLIS: u64 = i32::MAX as u64;

/// A count that must be at least one (a pool of no connections would never answer).
pub fn at_least_one(option: &str, n: u32) -> Result<u32, StoreError> {
    if n == 0 {
        return Err(invalid(option, "must be at least 1"));
    }
    Ok(n)
}

/// A wait that must be longer than zero (a zero acquire timeout fails every request).
pub fn positive(option: &str, d: Duration) -> Result<Duration, StoreError> {
    if d.is_zero() {
        return Err(invalid(option, "must be longer than zero"));
    }
    Ok(d)
}

/// A duration as the whole milliseconds a database setting takes, at most [`MAX_MILLIS`].
/// A fraction of a millisecond is rounded up, so a short timeout never becomes zero, which
/// means "no timeout" to both databases.
pub fn millis(option: &str, d: Duration) -> Result<u64, StoreError> {
    let whole = d.as_millis() + u128::from(!d.subsec_nanos().is_multiple_of(1_000_000));
    u64::try_from(whole)
        .ok()
        .filter(|ms| *ms <= MAX_MILLIS)
        .ok_or_else(|| invalid(option, &format!("must be at most {MAX_MILLIS} ms")))
}

fn invalid(option: &str, rule: &str) -> StoreError {
    StoreError::Unexpected(format!("invalid store option {option}: {rule}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_option() {
        let e = at_least_one("SqliteOptions::reader_connections", 0).expect_err("zero");
        assert!(
            e.to_string().contains("SqliteOptions::reader_connections"),
            "{e}"
        );
        assert_eq!(at_least_one("n", 4), Ok(4));
        let e = positive("PostgresOptions::acquire_timeout", Duration::ZERO).expect_err("zero");
        assert!(
            e.to_string().contains("PostgresOptions::acquire_timeout"),
            "{e}"
        );
        assert_eq!(
            positive("d", Duration::from_millis(1)),
            Ok(Duration::from_millis(1))
        );
    }

    #[test]
    fn millis_round_up_and_stay_in_range() {
        assert_eq!(millis("t", Duration::ZERO), Ok(0));
        assert_eq!(millis("t", Duration::from_micros(1)), Ok(1));
        assert_eq!(millis("t", Duration::from_micros(1_500)), Ok(2));
        assert_eq!(millis("t", Duration::from_secs(5)), Ok(5_000));
        assert_eq!(
            millis("t", Duration::from_millis(MAX_MILLIS)),
            Ok(MAX_MILLIS)
        );
        let e = millis("t", Duration::from_millis(MAX_MILLIS + 1)).expect_err("too long");
        assert!(e.to_string().contains(&MAX_MILLIS.to_string()), "{e}");
        assert!(millis("t", Duration::MAX).is_err());
    }
}
